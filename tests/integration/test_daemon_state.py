"""The state directory of a real `pysup run`: corrupt files at start, and what a restart keeps."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.integration.daemons import Fleet, all_alive, fleet
from tests.util import wait_for

__all__ = ["fleet"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_corrupt_state_files_are_moved_aside_and_the_daemon_starts(fleet: Fleet) -> None:
    sup = fleet.new("corrupt")
    state = sup.state_dir
    state.mkdir(parents=True)
    (state / "MEMBER_ID").write_text("not-a-member-id\n")
    (state / "INCARNATION").write_text("seven\n")
    garbage = b"\x00\xffgarbage that is no msgpack rumor store\xc1\xc1"
    (state / "rumors.dat").write_bytes(garbage)

    fleet.launch(sup).wait_http()
    member_id = sup.member_id()
    assert re.fullmatch(r"[0-9a-f]{32}", member_id)
    assert (state / "MEMBER_ID").read_text().strip() == member_id
    for name, content in (
        ("MEMBER_ID", b"not-a-member-id\n"),
        ("INCARNATION", b"seven\n"),
        ("rumors.dat", garbage),
    ):
        moved = list(state.glob(f"{name}.corrupt-*"))
        assert len(moved) == 1, (name, sorted(p.name for p in state.iterdir()))
        assert moved[0].read_bytes() == content  # kept for a post-mortem, not deleted
    log = sup.log_text()
    for name in ("MEMBER_ID", "INCARNATION", "rumors.dat"):
        assert re.search(rf"state\.corrupt .*file=\S*/{re.escape(name)} ", log), log
    me = sup.members()[member_id]
    assert me["incarnation"] == 1 and me["health"] == "Alive"
    assert "restored_rumors=0" in log


def test_restart_after_sigterm_keeps_id_restores_rumors_and_rejoins(fleet: Fleet) -> None:
    seed = fleet.start("seed")
    other = fleet.start("other", peers=[seed.gossip_addr])
    wait_for(lambda: all_alive([seed, other], 2), 15.0, interval=0.1, what="ring of 2")
    other_id = other.member_id()
    before = seed.members()[other_id]["incarnation"]

    other.signal(signal.SIGTERM)
    assert other.wait_exit(10) == 0
    wait_for(lambda: seed.health_of(other_id) == "Departed", 3.0, what="Departed")
    assert (other.state_dir / "rumors.dat").stat().st_size > 0  # saved at exit
    saved_incarnation = int((other.state_dir / "INCARNATION").read_text())
    assert saved_incarnation > before  # leaving took an incarnation of its own

    t0 = time.monotonic()
    fleet.launch(other).wait_http()
    assert other.member_id() == other_id
    assert re.search(r"supervisor\.started .*restored_rumors=1 ", other.log_text())
    try:
        wait_for(lambda: all_alive([seed, other], 2), 10.0, interval=0.1, what="rejoined")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None
    print(f"\nTIMING restart after SIGTERM -> Alive at both: {time.monotonic() - t0:.2f}s")
    assert seed.members()[other_id]["incarnation"] == saved_incarnation + 1
    assert int((other.state_dir / "INCARNATION").read_text()) == saved_incarnation + 1
    assert not list(Path(other.state_dir).glob("*.corrupt-*"))
