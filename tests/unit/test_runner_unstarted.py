"""A runner that never started (its supervisor's start failed before binding the gossip port,
e.g. the HTTP port was taken) is shut down cleanly: leaving sends nothing and raises nothing."""

from __future__ import annotations

import random

from pysup.butterfly.config import LAN
from pysup.butterfly.core import SwimCore
from pysup.butterfly.member import Member
from pysup.butterfly.runner import Runner


async def test_leave_before_start_is_a_no_op() -> None:
    core = SwimCore(LAN, Member("a" * 32, 1, "127.0.0.1", 9), random.Random(1), 0.0)
    runner = Runner(core, "127.0.0.1", 0)
    await runner.leave(linger_s=0.0)  # raised AssertionError (no loop yet) before the fix
    assert not core.departed  # nothing was told to anyone, nothing changed
    await runner.close()
