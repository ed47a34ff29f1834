"""Multi-host fault tests: five `pysup run` processes, each in its own network namespace with its
own address, joined by one bridge (`pysup.testing.netns.NetnsLab`). Faults are real packet drops
(iptables in each namespace); observations are each supervisor's own `/butterfly`, queried from
inside its namespace. Needs root; skips with the reason otherwise.

Every supervisor runs `--gossip-profile lan` (memberlist's LAN timings: probe 1 s, probe timeout
500 ms, suspicion multiplier 4, push-pull 30 s). The loss test must use real LAN timings, and
using them everywhere means each measured number below is what a LAN deployment gets.

What each test proves:

- `test_ten_percent_loss_never_confirms_a_live_member`: with 10% of incoming packets dropped on
  every host for PYSUP_NETNS_LOSS_S seconds (default 300, the issue's 5 minutes), no supervisor
  ever marks a live member Confirmed: neither in any `/butterfly` sample (every host, every ~2 s)
  nor in any `member.confirmed` log event (which catches a verdict refuted between two samples).
  Suspicions happen and are counted; they must be refuted. The drop counters prove loss was on.
- `test_partition_two_three_confirms_across_and_heals`: a {2}|{3} partition makes each side mark
  the other Confirmed (and keep its own side Alive); a config applied on the majority during the
  partition does not cross it, and reaches the minority after healing. The partition is held past
  `gossip_to_dead_s` after the last Confirmed, so healing cannot rely on gossip to the dead: it
  needs the reconnect push-pull. After healing every member is Alive everywhere within
  HEAL_BOUND_S.
- `test_kill9_restart_keeps_identity_and_rumors`: kill -9 makes the victim Confirmed everywhere;
  restarted on the same state dir (and cut off from the ring, so nothing can be re-learned) it has
  the same member id, a higher incarnation, and its rumors restored from disk (the other members,
  the applied config); healed, it is Alive everywhere at the new incarnation. A sampler reading
  every host's config version throughout fails if any version ever goes backwards anywhere,
  including on the restarted host across the restart.
- `test_sigterm_departs_everywhere_and_address_reuse_does_not_resurrect`: SIGTERM makes the member
  Departed on every other host within 3 s. A fresh supervisor (new state dir, new member id) on the
  same address joins as a new member, while the old member stays Departed everywhere, in every
  sample (every 0.25 s), through the join, the new member's catch-up push-pulls and ten probe
  periods (Habitat's #5865: a reused address resurrected the departed member).

Measured on the project machine (2 cores shared with other test runs), LAN profile, 5 hosts,
five runs:

- heal -> every member Alive everywhere: 0.3 to 0.9 s (bound asserted: HEAL_BOUND_S = 60 s). It
  is this quick because reconnects are frequent (every member tries one Confirmed member every
  ~30 s, and each try re-sends its SYN for up to 5 s), so one is usually in flight when the
  network heals; the worst case is one push-pull interval, 30 s x 1.25 jitter, plus a few gossip
  rounds. Without the reconnect a partition held this long never healed (90 s observed).
- partition -> each side marks the other Confirmed: 17 to 32 s (bound 90 s; the minority side
  is the slow one, see PARTITION_CONFIRM_BOUND_S).
- SIGTERM -> Departed everywhere: under 0.05 s, i.e. within one poll of every host (bound
  asserted: 3 s, the issue's).
- kill -9 -> Confirmed everywhere: 5.1 to 8.5 s (bound asserted: CONFIRM_BOUND_S = 45 s).
  Restart (same state dir) -> Alive everywhere at the new incarnation: 1.2 to 4.8 s.
- 300 s of 10% loss (two runs): 0 Confirmed; 24 and 41 member.suspect events (2-3 seen in 745
  samples), 7 and 11 refutations; each host received ~1,350 packets and dropped ~135 (~10%).
- The whole module: 6 min 35 s to 6 min 40 s (the loss test is about 5 min 8 s of it).
Each test prints its numbers (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pysup.butterfly.config import LAN
from pysup.testing.netns import NetnsLab, unavailable_reason
from tests.util import wait_for

N = 5
PROFILE = "lan"
GOSSIP_PORT = 9638
HTTP_PORT = 9631
CTL = "127.0.0.1:9632"
"""Each namespace has its own loopback, so every supervisor's control gateway has the default."""
GROUP = "app.default"
LOSS_S = float(os.environ.get("PYSUP_NETNS_LOSS_S", "300"))
LOSS_P = 0.10
START_BOUND_S = 30.0
"""Five supervisors start and converge on 2 busy cores within this long."""
CONFIRM_BOUND_S = 45.0
"""Suspect -> Confirmed takes at most the Lifeguard maximum (suspicion_max_timeout_mult x
suspicion_mult x probe interval = 24 s at N=5) after the probe that suspects, plus probe rounds."""
PARTITION_CONFIRM_BOUND_S = 90.0
"""The minority side is slower: its probes of the majority miss their nacks, so Lifeguard's local
health stretches its probe interval up to 8x before it even suspects, and its suspicions get only
one independent confirmation (timeout ~11 s instead of 4 s). Measured 17 to 32 s."""
HEAL_BOUND_S = 60.0
"""After healing, a reconnect push-pull comes within one push-pull interval (30 s x 1.25 jitter
at worst), then refutations spread within a few gossip rounds."""
DEPART_BOUND_S = 3.0
RUMOR_BOUND_S = 15.0
"""A rumor reaches every connected member within this long (gossip rounds are 200 ms)."""
SAMPLE_S = 2.0

pytestmark = [pytest.mark.netns]

_reason: list[str | None] = []


def _skip_reason() -> str | None:
    if not _reason:
        _reason.append(unavailable_reason())
    return _reason[0]


def report(what: str, seconds: float) -> None:
    print(f"netns: {what}: {seconds:.2f} s")


class Ring:
    """The supervisors of one lab: start them, read their `/butterfly`, read their logs."""

    def __init__(self, lab: NetnsLab, root: Path) -> None:
        self.lab = lab
        self.root = root
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
        self.seeds = [f"{lab.addrs[0]}:{GOSSIP_PORT}", f"{lab.addrs[2]}:{GOSSIP_PORT}"]

    def state_dir(self, i: int, life: int = 0) -> Path:
        return self.root / f"h{i}" / (f"state{life}" if life else "state")

    def log_path(self, i: int) -> Path:
        return self.root / f"h{i}" / "pysup.log"

    def start(self, i: int, state_dir: Path | None = None, settings: str = "") -> None:
        """Start host i's supervisor (appending to its log); `settings` is extra TOML."""
        a = self.lab.addrs[i]
        argv = [
            self.lab.python, "-m", "pysup", "run",
            "--listen-gossip", f"{a}:{GOSSIP_PORT}",
            "--listen-http", f"{a}:{HTTP_PORT}",
            "--listen-ctl", CTL,
            "--gossip-profile", PROFILE,
            "--state-dir", str(state_dir or self.state_dir(i)),
            "--json-logging",
        ]  # fmt: skip
        for s in self.seeds:
            argv += ["--peer", s]
        if settings:
            cfg = self.root / f"h{i}" / "settings.toml"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(settings)
            argv += ["--config", str(cfg)]
        self.procs[i] = self.lab.run(i, argv, self.env, log=self.log_path(i))

    def start_all(self) -> dict[int, str]:
        for i in range(N):
            self.start(i)
        ids = {i: self.member_id(i) for i in range(N)}
        self.wait(
            lambda: all(self.sees(i, dict.fromkeys(ids.values(), "Alive")) for i in range(N)),
            START_BOUND_S,
            "every member Alive everywhere after start",
        )
        return ids

    # --- observations -------------------------------------------------------------------

    def butterfly(self, i: int) -> dict[str, Any] | None:
        status, body = self.lab.http(i, "/butterfly", port=HTTP_PORT)
        if status != 200:
            return None
        data: dict[str, Any] = json.loads(body)
        return data

    def members(self, i: int) -> dict[str, dict[str, Any]] | None:
        data = self.butterfly(i)
        return None if data is None else data["member"]["members"]

    def health(self, i: int) -> dict[str, str] | None:
        """{member id: health} as host i sees it (itself included); None if it does not answer."""
        m = self.members(i)
        return None if m is None else {k: str(v["health"]) for k, v in m.items()}

    def config_version(self, i: int) -> int | None:
        """The incarnation of GROUP's config rumor at host i (0: none); None: no answer."""
        data = self.butterfly(i)
        if data is None:
            return None
        entry = data["service_config"]["list"].get(GROUP)
        return 0 if entry is None else int(entry["incarnation"])

    def member_id(self, i: int) -> str:
        def ask() -> str | None:
            self.check_running(i)
            data = self.butterfly(i)
            return None if data is None else str(data["member"]["local_member_id"])

        mid = wait_for(ask, START_BOUND_S, 0.2, f"h{i} /butterfly")
        assert mid is not None
        return mid

    def sees(self, i: int, want: dict[str, str]) -> bool:
        """Host i sees every member of `want` with the given health."""
        h = self.health(i)
        return h is not None and all(h.get(k) == v for k, v in want.items())

    def check_running(self, i: int) -> None:
        p = self.procs.get(i)
        if p is not None and p.poll() is not None:
            raise AssertionError(f"h{i} exited with {p.returncode}\n{self.tail(i)}")

    def wait(self, cond: Callable[[], object], timeout: float, what: str) -> float:
        """Poll `cond` (every 0.1 s) until true; the seconds it took. Fails with every host's
        view and log tail."""
        t0 = time.monotonic()
        try:
            wait_for(cond, timeout, 0.1, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.dump()}") from None
        return time.monotonic() - t0

    def events(self, i: int, name: str) -> list[dict[str, Any]]:
        out = []
        try:
            lines = self.log_path(i).read_text(errors="replace").splitlines()
        except OSError:
            return []
        for line in lines:
            if f'"{name}"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == name:
                out.append(rec)
        return out

    def tail(self, i: int, lines: int = 25) -> str:
        try:
            text = self.log_path(i).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"--- h{i} ({self.lab.addrs[i]}) log tail ---\n" + "\n".join(text)

    def dump(self) -> str:
        parts = []
        for i in range(N):
            parts.append(f"h{i} sees {self.health(i)}")
        parts += [self.tail(i) for i in range(N)]
        return "\n".join(parts)

    # --- the control gateway --------------------------------------------------------------

    def config_apply(self, i: int, version: int, toml: str, state_dir: Path | None = None) -> None:
        """`pysup config apply GROUP VERSION FILE` against host i's control gateway."""
        f = self.root / f"h{i}" / f"config-{version}.toml"
        f.write_text(toml)
        argv = [
            self.lab.python, "-m", "pysup", "config", "apply", GROUP, str(version), str(f),
            "--remote-sup", CTL, "--state-dir", str(state_dir or self.state_dir(i)),
        ]  # fmt: skip
        done = self.lab.exec(i, argv, self.env, timeout=30)
        assert done.returncode == 0, (
            f"config apply on h{i} failed ({done.returncode}): {done.stdout}{done.stderr}"
        )


class Sampler(threading.Thread):
    """Calls `fn` every `interval` seconds in the background until stopped; keeps the first
    exception, re-raised by `stop`."""

    def __init__(self, fn: Callable[[], None], interval: float) -> None:
        super().__init__(daemon=True)
        self.fn, self.interval = fn, interval
        self._stop_event = threading.Event()
        self.error: BaseException | None = None
        self.rounds = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.fn()
                self.rounds += 1
            except BaseException as e:
                self.error = e
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[Ring]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    lab = NetnsLab(N)
    try:
        yield Ring(lab, tmp_path)
    finally:
        lab.close()


# --- 10% loss -------------------------------------------------------------------------------


@pytest.mark.timeout(LOSS_S + 180)
def test_ten_percent_loss_never_confirms_a_live_member(ring: Ring) -> None:
    ids = ring.start_all()
    everyone = set(ids.values())
    for i in range(N):
        ring.lab.loss(i, LOSS_P)
    t0 = time.monotonic()
    suspect_samples = 0
    samples = 0
    while time.monotonic() - t0 < LOSS_S:
        for i in range(N):
            ring.check_running(i)
            h = ring.health(i)
            assert h is not None, f"h{i} /butterfly did not answer\n{ring.dump()}"
            samples += 1
            assert set(h) == everyone, f"h{i} sees members {sorted(h)}, want {sorted(everyone)}"
            bad = {k: v for k, v in h.items() if v in ("Confirmed", "Departed")}
            assert not bad, (
                f"{time.monotonic() - t0:.0f}s into 10% loss, h{i} marked live members {bad}"
                f"\n{ring.dump()}"
            )
            suspect_samples += sum(v == "Suspect" for v in h.values())
        confirmed = [e for i in range(N) for e in ring.events(i, "member.confirmed")]
        assert not confirmed, f"live members Confirmed under 10% loss: {confirmed}"
        time.sleep(SAMPLE_S)
    counts = [ring.lab.counters(i) for i in range(N)]  # before `loss(i, 0)` resets them
    for i in range(N):
        ring.lab.loss(i, 0.0)

    dropped = [c["loss_dropped"] for c in counts]
    arrived = [c["input"] for c in counts]
    suspects = sum(len(ring.events(i, "member.suspect")) for i in range(N))
    refuted = sum(len(ring.events(i, "member.refuted")) for i in range(N))
    print(
        f"netns: {LOSS_S:.0f}s of {LOSS_P:.0%} loss: {samples} samples, "
        f"{suspect_samples} Suspect sightings, {suspects} member.suspect events, "
        f"{refuted} refutations, 0 Confirmed; per host packets in {arrived}, dropped {dropped}"
    )
    # The loss was real: every host got gossip all along (a ping and an ack a second at least)
    # and dropped about LOSS_P of it.
    for i, (n_in, n_drop) in enumerate(zip(arrived, dropped, strict=True)):
        assert n_in > LOSS_S, f"h{i}: only {n_in} packets in {LOSS_S:.0f}s"
        assert LOSS_P / 2 < n_drop / n_in < LOSS_P * 2, f"h{i}: dropped {n_drop} of {n_in}"
    took = ring.wait(
        lambda: all(ring.sees(i, dict.fromkeys(everyone, "Alive")) for i in range(N)),
        HEAL_BOUND_S,
        "every member Alive everywhere after the loss stops",
    )
    report("loss off -> every member Alive everywhere", took)


# --- partition {2}|{3} ----------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_partition_two_three_confirms_across_and_heals(ring: Ring) -> None:
    minority, majority = [0, 1], [2, 3, 4]
    ids = ring.start_all()
    everyone = set(ids.values())

    def split_seen() -> bool:
        for side, other in ((minority, majority), (majority, minority)):
            want = {ids[j]: "Confirmed" for j in other} | {ids[j]: "Alive" for j in side}
            if not all(ring.sees(i, want) for i in side):
                return False
        return True

    ring.lab.partition(minority, majority)
    t_part = time.monotonic()
    took = ring.wait(split_seen, PARTITION_CONFIRM_BOUND_S, "each side marks the other Confirmed")
    report("partition -> each side marks the other Confirmed", took)

    # A config applied on the majority stays there while the partition lasts.
    ring.config_apply(majority[0], 1, 'greeting = "from the majority"\n')
    ring.wait(
        lambda: all(ring.config_version(i) == 1 for i in majority),
        RUMOR_BOUND_S,
        "the config reaches the whole majority",
    )
    # Hold the partition past gossip-to-the-dead, so healing needs the reconnect push-pull.
    hold_until = time.monotonic() + LAN.gossip_to_dead_s + 5.0
    while time.monotonic() < hold_until:
        assert split_seen(), f"the partition stopped being seen as one\n{ring.dump()}"
        assert all(ring.config_version(i) == 0 for i in minority), "config crossed"
        time.sleep(SAMPLE_S)

    ring.lab.heal()
    report("partition held", time.monotonic() - t_part)
    took = ring.wait(
        lambda: all(ring.sees(i, dict.fromkeys(everyone, "Alive")) for i in range(N)),
        HEAL_BOUND_S,
        "every member Alive everywhere after healing",
    )
    report("heal -> every member Alive everywhere", took)
    for i in range(N):
        h = ring.health(i)
        assert h is not None and set(h) == everyone, f"h{i} sees {h}"
    took = ring.wait(
        lambda: all(ring.config_version(i) == 1 for i in range(N)),
        HEAL_BOUND_S,
        "the majority's config reaches the minority after healing",
    )
    report("heal -> majority's config on the minority", took)


# --- kill -9 and restart --------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_kill9_restart_keeps_identity_and_rumors(ring: Ring) -> None:
    victim, others = N - 1, list(range(N - 1))
    # Save state every 2 s instead of every 30 s: the test is about restoring what was saved,
    # and a kill -9 loses whatever came after the last save.
    for i in range(N):
        ring.start(i, settings="state_save_interval_s = 2.0\n")
    ids = {i: ring.member_id(i) for i in range(N)}
    everyone = set(ids.values())
    ring.wait(
        lambda: all(ring.sees(i, dict.fromkeys(everyone, "Alive")) for i in range(N)),
        START_BOUND_S,
        "every member Alive everywhere after start",
    )
    ring.config_apply(others[0], 1, "version = 1\n")
    ring.wait(
        lambda: all(ring.config_version(i) == 1 for i in range(N)),
        RUMOR_BOUND_S,
        "config 1 everywhere",
    )

    # No config version ever goes backwards on any host (the victim across its restart too).
    highest: dict[int, int] = {}
    backwards: list[str] = []

    def sample() -> None:
        for i in range(N):
            v = ring.config_version(i)
            if v is None:
                continue  # not answering (killed, or starting)
            if v < highest.get(i, 0):
                backwards.append(f"h{i}: config {highest[i]} -> {v}")
            highest[i] = max(highest.get(i, 0), v)

    sampler = Sampler(sample, 0.5)
    sampler.start()
    try:
        before = ring.members(victim)
        assert before is not None
        old_inc = int(before[ids[victim]]["incarnation"])
        # Wait for a save that holds the whole ring (and the config).
        saved = ring.state_dir(victim) / "rumors.dat"
        t_seen = time.time()
        ring.wait(
            lambda: saved.exists() and saved.stat().st_mtime > t_seen + 0.1,
            10.0,
            "a state save after convergence",
        )

        ring.procs[victim].send_signal(signal.SIGKILL)
        ring.procs[victim].wait(timeout=10)
        t_kill = time.monotonic()
        took = ring.wait(
            lambda: all(ring.sees(i, {ids[victim]: "Confirmed"}) for i in others),
            CONFIRM_BOUND_S,
            "the killed member Confirmed everywhere",
        )
        report("kill -9 -> Confirmed everywhere", took)

        # Restart cut off from the ring: whatever it knows now came from its own disk.
        ring.lab.partition([victim], others)
        t_restart = time.monotonic()
        ring.start(victim, settings="state_save_interval_s = 2.0\n")
        assert ring.member_id(victim) == ids[victim], "a restart must keep the member id"
        restored = ring.butterfly(victim)
        assert restored is not None
        me = restored["member"]["members"][ids[victim]]
        assert me["incarnation"] > old_inc, f"incarnation {me['incarnation']} <= {old_inc}"
        seen = set(restored["member"]["members"])
        assert seen == everyone, f"restored members {sorted(seen)}, want {sorted(everyone)}"
        started = ring.events(victim, "supervisor.started")[-1]
        assert started["restored_rumors"] >= N - 1, started
        assert ring.config_version(victim) == 1, "the config rumor was not restored"

        ring.lab.heal()
        new_inc = int(me["incarnation"])

        def back() -> bool:
            for i in range(N):
                m = ring.members(i)
                if m is None or set(m) != everyone:
                    return False
                if any(v["health"] != "Alive" for v in m.values()):
                    return False
                if m[ids[victim]]["incarnation"] < new_inc:
                    return False
            return True

        took = ring.wait(back, HEAL_BOUND_S, "the restarted member Alive everywhere")
        report("restart -> Alive everywhere at the new incarnation", time.monotonic() - t_restart)
        report("kill -9 -> Alive again everywhere (restart included)", time.monotonic() - t_kill)

        ring.config_apply(victim, 2, "version = 2\n")
        ring.wait(
            lambda: all(ring.config_version(i) == 2 for i in range(N)),
            RUMOR_BOUND_S,
            "config 2 (applied on the restarted host) everywhere",
        )
    finally:
        sampler.stop()
    assert sampler.rounds > 5, "the version sampler hardly ran"
    assert not backwards, f"config versions went backwards: {backwards}"


# --- SIGTERM, then the address reused ---------------------------------------------------------


@pytest.mark.timeout(300)
def test_sigterm_departs_everywhere_and_address_reuse_does_not_resurrect(ring: Ring) -> None:
    leaver, others = N - 1, list(range(N - 1))
    ids = ring.start_all()
    old = ids[leaver]

    proc = ring.procs[leaver]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    took = ring.wait(
        lambda: all(ring.sees(i, {old: "Departed"}) for i in others),
        DEPART_BOUND_S,
        "Departed everywhere within 3 s of SIGTERM",
    )
    report("SIGTERM -> Departed everywhere", took)
    assert proc.wait(timeout=15) == 0, ring.tail(leaver)
    assert time.monotonic() - t0 < 15

    # The old member must stay Departed on every host that knows it, in every sample, while a
    # fresh supervisor lives at its address.
    resurrected: list[str] = []

    def sample() -> None:
        for i in range(N):
            h = ring.health(i)
            if h is not None and old in h and h[old] != "Departed":
                resurrected.append(f"h{i} sees the departed member {h[old]}")

    sampler = Sampler(sample, 0.25)
    sampler.start()
    try:
        fresh_dir = ring.state_dir(leaver, life=1)
        ring.start(leaver, state_dir=fresh_dir)
        new = ring.member_id(leaver)
        assert new != old, "a fresh state dir must give a new member id"
        ring.wait(
            lambda: all(ring.sees(i, {new: "Alive", old: "Departed"}) for i in others),
            START_BOUND_S,
            "the fresh member Alive everywhere, the old one still Departed",
        )
        # Ten probe periods and the new member's catch-up push-pulls later, still so.
        time.sleep(10 * LAN.probe_interval_s)
        for i in range(N):
            h = ring.health(i)
            assert h is not None and h.get(new) == "Alive", f"h{i} sees {h}"
            assert h.get(old, "Departed") == "Departed", f"h{i} sees {h}"
    finally:
        sampler.stop()
    assert sampler.rounds > 10, "the resurrection sampler hardly ran"
    assert not resurrected, resurrected
