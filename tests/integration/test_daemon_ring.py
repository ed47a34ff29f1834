"""Real `pysup run` processes forming, losing and rejoining one gossip ring on 127.0.0.x.

Bounds come from the `local` gossip profile (probe 1 s, timeout 0.2 s, suspicion mult 3) plus
slack for a shared 2-core machine; each wait polls `/butterfly` and fails at its bound.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.integration.daemons import (
    Fleet,
    Sup,
    all_alive,
    fleet,
    health_everywhere,
    http_get,
    lifeguard_bound_s,
    report,
)
from tests.util import process_alive, wait_for

__all__ = ["fleet"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FORM_BOUND_S = 20.0
"""From every gateway answering to one full ring: joins retry from 1 s, catch-up push-pulls at
1/2/4 s and gossip every 0.1 s, so a healthy ring forms in a few seconds."""
PEER_WATCH_IDLE_S = 6.0
"""How long the peer-watch file stays empty before the seed's address is written to it."""
DEPART_BOUND_S = 3.0
"""A SIGTERMed member tells every live member at once that it departed."""


def start_ring(
    fleet: Fleet, n: int, distinct_hosts: bool = True, extra: Sequence[str] = ()
) -> list[Sup]:
    """n supervisors, member i on 127.0.0.(10+i) when `distinct_hosts`, all seeded with member 0,
    started at once; returns when every gateway answers."""
    hosts = [f"127.0.0.{10 + i}" if distinct_hosts else "127.0.0.1" for i in range(n)]
    seed = fleet.new("m0", host=hosts[0], extra=extra)
    sups = [seed] + [
        fleet.new(f"m{i}", host=hosts[i], peers=[seed.gossip_addr], extra=extra)
        for i in range(1, n)
    ]
    for s in sups:
        fleet.launch(s)
    for s in sups:
        s.wait_http()
    return sups


def wait_ring(sups: list[Sup], n: int, fleet: Fleet, bound: float = FORM_BOUND_S) -> float:
    t0 = time.monotonic()
    try:
        wait_for(lambda: all_alive(sups, n), bound, interval=0.2, what=f"{n} Alive everywhere")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None
    return time.monotonic() - t0


def test_three_supervisors_form_one_ring_with_observed_addresses(fleet: Fleet) -> None:
    sups = start_ring(fleet, 3)
    wait_ring(sups, 3, fleet)
    ids = {s.member_id() for s in sups}
    assert len(ids) == 3
    for s in sups:
        members = s.members()
        assert set(members) == ids
        for other in sups:
            m = members[other.member_id()]
            # Each member is known at its own 127.0.0.x and gossip port, with the full field set.
            assert (m["address"], m["gossip_port"]) == (other.host, other.gossip_port)
            assert m["incarnation"] >= 1 and m["persistent"] is False
            assert len(m["id"]) == 32


def test_the_asyncio_udp_backend_forms_the_same_ring(fleet: Fleet) -> None:
    """`--udp-backend asyncio` (asyncio's own datagram endpoint, the benchmarks' choice) forms a
    ring just like the default asyncio-dgram back end."""
    sups = start_ring(fleet, 3, extra=["--udp-backend", "asyncio"])
    wait_ring(sups, 3, fleet)
    ids = {s.member_id() for s in sups}
    assert all(set(s.members()) == ids for s in sups)


def test_ten_supervisors_form_one_ring(fleet: Fleet) -> None:
    t_spawn = time.monotonic()
    sups = start_ring(fleet, 10)
    t_up = time.monotonic()
    formed = wait_ring(sups, 10, fleet)
    report("10-member ring: spawn -> all gateways up", t_up - t_spawn)
    report("10-member ring: all gateways up -> 10 Alive on all 10", formed)
    report("10-member ring: spawn -> 10 Alive on all 10", time.monotonic() - t_spawn)
    # Stable, not a transient: still one ring of 10 after a few probe periods.
    time.sleep(3 * 1.0)
    assert all_alive(sups, 10), fleet.logs()


def test_kill_9_is_confirmed_within_lifeguard_bound_and_restart_keeps_id(fleet: Fleet) -> None:
    sups = start_ring(fleet, 3)
    wait_ring(sups, 3, fleet)
    victim, observers = sups[2], sups[:2]
    victim_id = victim.member_id()
    old_incarnation = observers[0].members()[victim_id]["incarnation"]

    victim.signal(signal.SIGKILL)
    t0 = time.monotonic()
    victim.wait_exit(5)
    bound = lifeguard_bound_s(3)
    try:
        wait_for(
            lambda: health_everywhere(observers, victim_id, "Confirmed"),
            bound,
            interval=0.1,
            what="Confirmed at every other member",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None
    report(f"kill -9 -> Confirmed at all others (bound {bound:.1f}s)", time.monotonic() - t0)
    assert all(o.health_of(o.member_id()) == "Alive" for o in observers)

    t1 = time.monotonic()
    fleet.launch(victim)  # same arguments, same state dir
    victim.wait_http()
    assert victim.member_id() == victim_id
    wait_ring(sups, 3, fleet, bound=10.0)
    report("restart after kill -9: spawn -> Alive everywhere", time.monotonic() - t1)
    for s in sups:
        assert s.members()[victim_id]["incarnation"] > old_incarnation


def test_permanent_seed_restarted_without_peers_is_found_again(fleet: Fleet) -> None:
    """-I: the others keep probing a Confirmed permanent peer, so a seed that restarts with no
    --peer of its own (and no saved rumors: it was killed) rejoins the ring it seeded."""
    seed = fleet.new("seed", extra=["-I"])
    others = [fleet.new(f"m{i}", peers=[seed.gossip_addr]) for i in (1, 2)]
    for s in (seed, *others):
        fleet.launch(s)
    for s in (seed, *others):
        s.wait_http()
    wait_ring([seed, *others], 3, fleet)
    seed_id = seed.member_id()
    assert others[0].members()[seed_id]["persistent"] is True

    seed.signal(signal.SIGKILL)
    seed.wait_exit(5)
    wait_for(
        lambda: health_everywhere(others, seed_id, "Confirmed"),
        lifeguard_bound_s(3),
        interval=0.1,
        what="seed Confirmed",
    )
    t0 = time.monotonic()
    fleet.launch(seed).wait_http()
    # Each of the others probes one eligible member per 1 s period, the seed included.
    wait_ring([seed, *others], 3, fleet, bound=10.0)
    report("permanent seed restarted without peers -> ring of 3 again", time.monotonic() - t0)


def test_sigterm_departs_at_once_and_exits_0(fleet: Fleet) -> None:
    sups = start_ring(fleet, 3)
    wait_ring(sups, 3, fleet)
    leaver, observers = sups[1], [sups[0], sups[2]]
    leaver_id = leaver.member_id()

    leaver.signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        wait_for(
            lambda: health_everywhere(observers, leaver_id, "Departed"),
            DEPART_BOUND_S,
            interval=0.05,
            what="Departed at every other member",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None
    report("SIGTERM -> Departed at all others", time.monotonic() - t0)
    assert leaver.wait_exit(10) == 0, leaver.log_tail()
    assert "supervisor.stopped" in leaver.log_text()
    # The others carry on as a ring of two.
    for o in observers:
        assert o.health_of(observers[0].member_id()) == "Alive"
        assert o.health_of(observers[1].member_id()) == "Alive"


def test_peer_watch_file_written_later_is_joined_through(fleet: Fleet, tmp_path: Path) -> None:
    seed = fleet.start("seed")
    watch = tmp_path / "peers.txt"
    watch.write_text("")
    joiner = fleet.start("joiner", extra=["--peer-watch-file", str(watch)])
    # An empty file means no seed: alone, and still serving. Long enough that a join backoff
    # grown while there was nothing to join would have reached several seconds.
    time.sleep(PEER_WATCH_IDLE_S)
    assert len(joiner.members()) == 1 and len(seed.members()) == 1
    watch.write_text(f"# written by an operator\n{seed.gossip_addr}\n")
    t0 = time.monotonic()
    # The file is re-read at every join attempt; with no seed to try, attempts stay at the base
    # retry interval (1 s, jittered up to 1.5 s), so the join follows within a few seconds.
    wait_ring([seed, joiner], 2, fleet, bound=4.0)
    report("peer-watch file written -> joined", time.monotonic() - t0)


def _ports_free(base: int, members: int) -> bool:
    """Every port `pysup ring` uses from `base` is free (TCP, and UDP for gossip)."""
    for i in range(members):
        for off, udp in ((0, False), (1, False), (7, True)):
            port = base + 10 * i + off
            kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
            for kind in kinds:
                with socket.socket(socket.AF_INET, kind) as s:
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        return False
    return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_local_ring_command_forms_a_ring_and_ctrl_c_stops_all(fleet: Fleet, tmp_path: Path) -> None:
    # Below the kernel's ephemeral range, so no port picked by bind(0) anywhere on the machine
    # (other tests, outgoing connections) takes one of ours between the check and the bind.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    candidates = (rng.randrange(10000, low - 100, 100) for _ in range(200))
    base = next(b for b in candidates if _ports_free(b, 3))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
    cmd = [sys.executable, "-m", "pysup", "ring", "--members", "3", "--base-port", str(base)]
    cmd += ["--state-root", str(tmp_path / "ring")]
    parent = fleet.popen(cmd, tmp_path / "ring.log", env)

    def logs() -> str:
        return (tmp_path / "ring.log").read_text(errors="replace")

    def three_alive() -> bool:
        assert parent.poll() is None, logs()
        status, body = http_get(f"http://127.0.0.1:{base}/butterfly")
        if status != 200:
            return False
        members = json.loads(body)["member"]["members"]
        return len(members) == 3 and all(m["health"] == "Alive" for m in members.values())

    try:
        wait_for(three_alive, 25.0, interval=0.2, what="member 0 lists 3 Alive")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs()}") from None
    children = _children(parent.pid)
    assert len(children) == 3, children

    parent.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        rc = parent.wait(timeout=15)
    except Exception:
        raise AssertionError(f"pysup ring did not stop on SIGINT\n{logs()}") from None
    assert rc == 0, logs()
    assert not any(process_alive(c) for c in children)
    assert http_get(f"http://127.0.0.1:{base}/healthz", timeout=0.5)[0] == 0


def _ring_key(fleet: Fleet, cache: Path, name: str) -> None:
    proc = fleet.popen(
        [sys.executable, "-m", "pysup", "ring", "key", "generate", name, "--key-cache", str(cache)],
        cache / f"generate-{name}.log",
    )
    assert proc.wait(timeout=30) == 0, (cache / f"generate-{name}.log").read_text()
    assert len(list(cache.glob(f"{name}-*.sym.key"))) == 1


def test_rings_under_different_keys_or_no_key_never_merge(fleet: Fleet, tmp_path: Path) -> None:
    """alpha (2 members) and beta (1) are encrypted with different ring keys, plain has none.
    beta is pointed at alpha and at plain, plain at alpha: each side must reject the other's
    packets (counted by reason) and every ring stays as it was."""
    cache = tmp_path / "keys"
    cache.mkdir()
    _ring_key(fleet, cache, "alpha")
    _ring_key(fleet, cache, "beta")
    keyed = {"HAB_CACHE_KEY_PATH": str(cache)}
    a0 = fleet.new("a0", extra=["--ring", "alpha"], env=keyed)
    a1 = fleet.new("a1", peers=[a0.gossip_addr], extra=["--ring", "alpha"], env=keyed)
    plain = fleet.new("plain", peers=[a0.gossip_addr])
    beta = fleet.new(
        "beta", peers=[a0.gossip_addr, plain.gossip_addr], extra=["--ring", "beta"], env=keyed
    )
    sups = [a0, a1, plain, beta]
    for s in sups:
        fleet.launch(s)
    for s in sups:
        s.wait_http()
    wait_ring([a0, a1], 2, fleet)  # the same key does form a ring
    assert "ring=alpha-" in a0.log_text()

    def rejected_repeatedly() -> bool:
        # Two join attempts each (1 s apart, jittered), so the rejections are not a one-off.
        return (
            a0.rejected("decrypt") >= 2
            and a0.rejected("unencrypted") >= 2
            and plain.rejected("encrypted") >= 2
        )

    try:
        wait_for(rejected_repeatedly, 15.0, interval=0.25, what="rejections at a0 and plain")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None
    assert set(a0.members()) == set(a1.members()) == {a0.member_id(), a1.member_id()}
    assert list(beta.members()) == [beta.member_id()]
    assert list(plain.members()) == [plain.member_id()]
    assert beta.rejected("decrypt") == 0  # nobody answered beta with anything it could read
    assert "gossip.rejected" in a0.log_text()
