"""Process clean-up for tests and benchmarks that start real supervisors."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def kill_processes_under(root: Path) -> int:
    """SIGKILL every process whose command line mentions `root`: services left running by a
    supervisor that was itself killed with -9. Returns how many were signalled."""
    needle = str(root).encode()
    n = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                n += 1
    return n
