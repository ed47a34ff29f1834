"""What `pysup run` does not import unless it is used (issue 18: memory and start-up are paid by
every supervisor, in every container). Run in a fresh interpreter: this process has imported
everything already."""

from __future__ import annotations

import subprocess
import sys

NOT_AT_START = ("cryptography",)
"""cryptography's X.509 is for `sup secret generate-tls` only: ~35 ms and ~7 MB at start-up."""


def test_the_daemon_module_does_not_import_what_only_other_commands_use() -> None:
    code = (
        "import sys, pysup.daemon; "
        f"print(' '.join(m for m in {NOT_AT_START!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start: {out.stdout.strip()}"
