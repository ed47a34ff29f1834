"""Leader topology with real `pysup run` processes on 127.0.0.x: one leader everywhere, the same in
/census, /services and the rendered templates; kill -9 of the leader (supervisor and service) gives
a new leader within the failure-detection bound plus a few gossip rounds; a member left without
quorum stops its service and says why. (Partitions are the simulator's: tests/sim.)"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pysup.butterfly.member import Member
from pysup.butterfly.messages import ElectionRumor, ElectionStatus, Rumor, RumorKind, ServiceRumor
from pysup.census import Census
from pysup.census_build import build_census
from pysup.election import Participant
from pysup.service.coordination import group_view
from pysup.service.manager import ServiceManager
from pysup.service.spec import ServiceSpec, Topology
from pysup.statedir import StateDir
from tests.integration.daemons import Fleet, Sup, lifeguard_bound_s, report
from tests.integration.test_service import FAST, MEMBER_ID, Ring, until, write_plan
from tests.util import free_port, wait_for

__all__ = ["fleet"]

SERVICE_PIDS: list[int] = []
"""Service process groups seen by this module's tests, killed at teardown: a supervisor killed
with SIGKILL (ours, or the fleet's cleanup) leaves its services running in their own sessions."""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The daemons fleet, stopped gently first: SIGTERM lets each supervisor stop its services
    (the fleet's own cleanup is SIGKILL, which would orphan them)."""
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        for sup in f.sups:
            if sup.alive():
                for name in ("backend", "frontend"):
                    pid = service_pid(sup, name)
                    if pid:
                        SERVICE_PIDS.append(pid)
                sup.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        for sup in f.sups:
            while sup.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        f.close()
        while SERVICE_PIDS:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(SERVICE_PIDS.pop(), signal.SIGKILL)


REPO = Path(__file__).resolve().parents[2]
BACKEND = REPO / "plans" / "backend"
SG = "backend.default"
ELECTION_SLACK_S = 5.0
"""A few gossip rounds (local profile: 0.1 s) and re-renders on a loaded 2-core machine."""


def backend_env(host: str, port: int, warmup: float = 0.0, suitability: int = 0) -> dict[str, str]:
    cfg = {"suitability": suitability, "http": {"listen": host, "port": port, "warmup": warmup}}
    return {"HAB_BACKEND": json.dumps(cfg)}


def start_group(
    fleet: Fleet,
    n: int,
    args: Sequence[str],
    plan: Path = BACKEND,
    warmup: float = 0.0,
    prefix: str = "m",
    suitability: dict[int, int] | None = None,
) -> list[Sup]:
    """n supervisors running `plan` with `args`, member i on 127.0.0.(20+i), seeded with member 0;
    returns once every gateway answers."""
    sups: list[Sup] = []
    for i in range(n):
        host = f"127.0.0.{20 + i}"
        sups.append(
            fleet.new(
                f"{prefix}{i}",
                host=host,
                peers=[sups[0].gossip_addr] if sups else [],
                extra=[str(plan), "--health-check-interval", "0.5", *args],
                env=backend_env(host, free_port(host), warmup, (suitability or {}).get(i, 0)),
            )
        )
    for s in sups:
        fleet.launch(s)
    for s in sups:
        s.wait_http()
    return sups


def census_group(sup: Sup, sg: str = SG) -> dict[str, Any] | None:
    status, data = sup.get_json("/census")
    if status != 200 or not isinstance(data, dict):
        return None
    group: dict[str, Any] | None = data["census_groups"].get(sg)
    return group


def service(sup: Sup, name: str = "backend") -> dict[str, Any] | None:
    status, data = sup.get_json("/services")
    if status != 200 or not isinstance(data, list):
        return None
    return next((s for s in data if s["pkg"]["name"] == name), None)


def rendered(sup: Sup, name: str = "backend", file: str = "backend.toml") -> dict[str, Any]:
    path = sup.state_dir / "svc" / name / "config" / file
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def agreed_leader(sups: Sequence[Sup], n_members: int) -> str | None:
    """The leader every supervisor in `sups` reports in /census (status ElectionFinished, exactly
    one member flagged leader, the others followers), or None."""
    leaders = set()
    for s in sups:
        g = census_group(s)
        if g is None or g["election_status"] != "ElectionFinished" or not g["leader_id"]:
            return None
        pop = g["population"]
        if len(pop) != n_members:
            return None
        flagged = [m for m, v in pop.items() if v["leader"]]
        if flagged != [g["leader_id"]]:
            return None
        if not all(v["follower"] for m, v in pop.items() if m != g["leader_id"]):
            return None
        leaders.add(g["leader_id"])
    return leaders.pop() if len(leaders) == 1 else None


def service_pid(sup: Sup, name: str = "backend") -> int | None:
    svc = service(sup, name)
    return svc["process"]["pid"] if svc is not None else None


def kill_node(sup: Sup, name: str = "backend") -> None:
    """kill -9 the supervisor and its service: the machine died."""
    pid = service_pid(sup, name)
    if pid:
        SERVICE_PIDS.append(pid)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(5)
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def wait(cond: Any, bound: float, what: str, fleet: Fleet, interval: float = 0.1) -> Any:
    try:
        return wait_for(cond, bound, interval=interval, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None


def everyone_up_with_leader(sups: Sequence[Sup], leader: str) -> bool:
    """Each service is up, /services says ElectionFinished and the rendered config names the
    leader (svc.me.leader on the leader only, svc.leader everywhere)."""
    for s in sups:
        svc = service(s)
        if svc is None or svc["process"]["state"] != "up":
            return False
        if svc["last_election_status"] != "ElectionFinished":
            return False
        cfg = rendered(s)
        if cfg.get("leader_id") != leader or not cfg.get("election_finished"):
            return False
        if cfg.get("leader") != (svc["sys"]["member_id"] == leader):
            return False
        if cfg.get("follower") == cfg.get("leader"):
            return False
    return True


@pytest.mark.parametrize("n", [3, 5])
def test_one_leader_everywhere_and_kill_9_of_the_leader_elects_another(
    fleet: Fleet, n: int
) -> None:
    t0 = time.monotonic()
    sups = start_group(fleet, n, ["--topology", "leader"], suitability={1: 5})
    leader = wait(lambda: agreed_leader(sups, n), 30.0, f"one leader on all {n}", fleet)
    report(f"{n} members: spawn -> one leader everywhere", time.monotonic() - t0)
    # Exactly one of the members leads. Which one depends on who had joined when the first
    # election finished (Habitat keeps a finished leader even if a more suitable member joins
    # later), so the suitability rule itself is proven in the simulator and unit tests, where
    # the ring is complete before the election; here, under a loaded CI machine, it may not be.
    assert leader in {s.member_id() for s in sups}
    wait(lambda: everyone_up_with_leader(sups, leader), 20.0, "services up, templates", fleet)

    victim = next(s for s in sups if s.member_id() == leader)
    survivors = [s for s in sups if s is not victim]
    kill_node(victim)
    t1 = time.monotonic()
    bound = lifeguard_bound_s(n) + ELECTION_SLACK_S

    def new_leader() -> str | None:
        got = agreed_leader(survivors, n)
        return got if got is not None and got != leader else None

    successor = wait(new_leader, bound, "a new leader on every survivor", fleet)
    took = time.monotonic() - t1
    report(f"{n} members: kill -9 leader -> new leader everywhere (bound {bound:.1f}s)", took)
    # The victim is not flagged anything but Confirmed; the survivors render the new leader.
    for s in survivors:
        g = census_group(s)
        assert g is not None and g["population"][leader]["confirmed"]
    wait(lambda: everyone_up_with_leader(survivors, successor), 20.0, "re-rendered", fleet)


def waiting_for(sup: Sup, missing: int) -> bool:
    """`sup` shows the wait for the first election: /census ElectionNoQuorum without a leader and
    3 - missing members; /services ElectionNoQuorum, the service down and waiting, saying so."""
    g, svc = census_group(sup), service(sup)
    return (
        g is not None
        and svc is not None
        and g["election_status"] == "ElectionNoQuorum"
        and g["leader_id"] is None
        and len(g["population"]) == 3 - missing
        and svc["last_election_status"] == "ElectionNoQuorum"
        and svc["process"]["state"] == "down"
        and svc["pysup"]["state"] == "waiting"
        and (svc["pysup"]["reason"] or "").endswith(f"waiting for {missing} more")
    )


def test_members_started_one_by_one_elect_once_the_third_is_there(fleet: Fleet) -> None:
    """The blog's compose flow: `super` starts alone, the clients join it later. Alone, then with
    one client, no leader is elected and no service starts (checked once each member has reported
    its wait, so the election logic has run on what it knows); the third member's arrival elects
    exactly one leader and every service starts under it. The first member's log says how many
    members it waits for, once per change. On the old code the lone member elected itself."""
    sups: list[Sup] = []
    for i in range(3):
        host = f"127.0.0.{20 + i}"
        sup = fleet.new(
            f"m{i}",
            host=host,
            peers=[sups[0].gossip_addr] if sups else [],
            extra=[str(BACKEND), "--health-check-interval", "0.5", "--topology", "leader"],
            env=backend_env(host, free_port(host)),
        )
        fleet.launch(sup)
        sup.wait_http()
        sups.append(sup)
        if len(sups) == 3:
            break
        missing = 3 - len(sups)
        wait(
            lambda missing=missing: all(waiting_for(s, missing) for s in sups),
            30.0,
            f"{len(sups)} member(s) waiting for {missing} more",
            fleet,
        )
        for s in sups:
            assert not (s.state_dir / "svc" / "backend" / "data" / "starts.log").exists()
    t0 = time.monotonic()
    leader = wait(lambda: agreed_leader(sups, 3), 30.0, "one leader on all 3", fleet)
    report("third member started -> one leader everywhere", time.monotonic() - t0)
    wait(lambda: everyone_up_with_leader(sups, leader), 20.0, "services up, templates", fleet)
    lines = [ln for ln in sups[0].log_text().splitlines() if "election.waiting_for_members" in ln]
    assert len(lines) == 2, lines
    assert "members=1" in lines[0] and "waiting_for=2" in lines[0], lines
    assert "members=2" in lines[1] and "waiting_for=1" in lines[1], lines


def test_member_without_quorum_stops_its_service_and_says_why(fleet: Fleet) -> None:
    sups = start_group(fleet, 3, ["--topology", "leader"])
    leader = wait(lambda: agreed_leader(sups, 3), 30.0, "one leader", fleet)
    wait(lambda: everyone_up_with_leader(sups, leader), 20.0, "services up", fleet)
    last = next(s for s in sups if s.member_id() != leader)
    for s in sups:
        if s is not last:
            kill_node(s)
    bound = lifeguard_bound_s(3) + ELECTION_SLACK_S

    def fenced() -> bool:
        svc, g = service(last), census_group(last)
        return (
            svc is not None
            and g is not None
            and svc["process"]["state"] == "down"
            and svc["pysup"]["state"] == "waiting"
            and "No quorum" in (svc["pysup"]["reason"] or "")
            and svc["last_election_status"] == "ElectionNoQuorum"
            and g["leader_id"] is None
        )

    wait(fenced, bound, "the lone member stops its service without quorum", fleet)
    svc = service(last)
    assert svc is not None
    assert "1 of 3 members alive" in svc["pysup"]["reason"], svc["pysup"]


class ElectingRing(Ring):
    """tests/integration/test_service.py's in-memory ring, also carrying election rumors, with
    peers that exist only as members of the ring: each loads the same service (a Service rumor)
    and takes part in its election through the real pure logic (``election.Participant``), as
    their supervisors would; gossip is instant."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: dict[str, Participant] = {}
        self._stepping = False

    def members(self) -> list[Member]:
        return [self.local, *(Member(p, 0, "127.0.0.1", 9638) for p in self.peers)]

    def census(self) -> Census:
        return build_census(self.local, self.members(), self.store)

    def publish(self, rumor: Rumor) -> None:
        if isinstance(rumor, ServiceRumor):
            self.published.append(rumor)
        self.gossip(rumor)

    def add_peer(self, member_id: str, sg: str) -> None:
        self.peers[member_id] = Participant()
        self.gossip(ServiceRumor(member_id, sg, 1, "test/peer/1/1", True))

    def gossip(self, rumor: Rumor) -> None:
        super().gossip(rumor)
        if self._stepping:
            return
        self._stepping = True
        try:
            self._peers_vote()
        finally:
            self._stepping = False

    def _peers_vote(self) -> None:
        """Let every peer step until none has anything to publish (a fixed point)."""
        for _ in range(50):
            quiet = True
            for peer, part in self.peers.items():
                census = build_census(
                    Member(peer, 0, "127.0.0.1", 9638), self.members(), self.store
                )
                for group in census.groups.values():
                    d = part.step(group_view(census, group), group.election, suitability=0, now=0)
                    if d.publish is not None:
                        quiet = False
                        super().gossip(d.publish)
            if quiet:
                return


async def test_hooks_wait_until_three_members_elected_a_leader(tmp_path: Path) -> None:
    """In process (manager, service, coordinator, real hooks): alone, and with one peer, the
    member does not elect itself (NoQuorum, no init, the reason counts the missing members) while
    its suitability hook is rendered and run; the third member's arrival finishes the election,
    this member (suitability 42) leads, and only then does init run, seeing it."""
    sg = "leaderly.default"
    plan = write_plan(
        tmp_path,
        "leaderly",
        {
            "init": "#!/bin/sh\necho '{{svc.election_is_finished}} {{svc.me.leader}}'"
            " > {{pkg.svc_data_path}}/init-ran\n",
            "run": "#!/bin/sh\nexec sleep 100\n",
            "suitability": "#!/bin/sh\necho 42\n",
        },
    )
    ring = ElectingRing()
    manager = ServiceManager(
        state=StateDir(tmp_path / "state"),
        sys_info={"ip": "127.0.0.1"},
        member_id=MEMBER_ID,
        census=ring.census,
        publish=ring.publish,
        hook_timeout_s=10.0,
        rng=random.Random(3),
        tuning=FAST,
        census_debounce_s=0.02,
    )
    ring.manager = manager
    init_ran = tmp_path / "state" / "svc" / "leaderly" / "data" / "init-ran"

    def stored() -> ElectionRumor | None:
        rumor = ring.store.get(RumorKind.ELECTION, sg, "election")
        return rumor if isinstance(rumor, ElectionRumor) else None

    try:
        svc = await manager.load(ServiceSpec(plan, topology=Topology.LEADER))
        for peers, missing in ((0, 2), (1, 1)):
            if peers:
                ring.add_peer(f"{peers:032x}", sg)
            said = f"waiting for {missing} more"
            await until(lambda said=said: said in (svc.reason or ""), what=said)
            election = stored()
            assert election is not None and election.status is ElectionStatus.NO_QUORUM
            assert election.suitability == 42  # the suitability hook ran while waiting
            assert svc.election_status.value == "ElectionNoQuorum"
            assert svc.process.pid is None and not init_ran.exists()
        ring.add_peer(f"{2:032x}", sg)
        await until(lambda: svc.process.pid is not None, what="started after the election")
        group = ring.census().group(sg)
        assert group is not None and group.leader_id == MEMBER_ID
        election = stored()
        assert election is not None and election.status is ElectionStatus.FINISHED
        assert election.term == 1 and len(election.votes) == 3
        assert init_ran.read_text().split() == ["true", "true"]
        assert svc.election_status.value == "ElectionFinished"
    finally:
        await manager.stop_all(10.0)
