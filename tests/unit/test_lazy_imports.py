"""What `pysup run` does not import unless it is used (issue 18: memory and start-up are paid by
every supervisor, in every container). Run in a fresh interpreter: this process has imported
everything already."""

from __future__ import annotations

import subprocess
import sys

NOT_AT_START = (
    "cryptography",  # X.509 is for `sup secret generate-tls` only: ~35 ms and ~7 MB
    # The service runtime: plan loader, plan.sh, template engine, hooks, processes, elections.
    "pysup.service.service",
    "pysup.service.plan",
    "pysup.service.plansh",
    "pysup.service.handlebars",
    "pysup.service.svcdir",
    "pysup.service.context",
    "pysup.service.hooks",
    "pysup.service.process",
    "pysup.service.parts",
    # The Kubernetes client and native mode: only with --peer-discovery kubernetes / --mode.
    "pysup.native",
    "pysup.native_state",
    "pysup.discovery.kube_client",
    "pysup.discovery.kubernetes",
    "pysup.discovery.reflector",
    "pysup.discovery.lease",
    "pysup.discovery.configmap",
    # Box crypto and the key cache: only with the first encrypted payload.
    "pysup.crypto.message",
    "pysup.crypto.keycache",
    "nacl.public",
    # The other commands' parsers: the control client and the key commands (`pysup run` builds
    # its own parser only).
    "pysup.ctl_cli",
    "pysup.ctl_client",
    "pysup.http_client",
    "pysup.key_cli",
    # TLS files: only with --certs/--key or the control gateway's TLS flags.
    "pysup.crypto.certgen",
    "pysup.crypto.certwatch",
    # Libraries only some paths need.
    "tomli_w",  # writing a saved spec (`svc load`)
    "tomllib",  # reading a config file, a saved spec or a gossiped config
    "ctypes",  # becoming a subreaper
    "difflib",  # hook-name suggestions in plan errors
    "decimal",  # the template engine's TOML output
    "zipfile",  # importlib.resources' readers (the dashboard's files, on their first request)
)
"""Each is ms and memory an idle supervisor would pay for nothing (`python -m bench.startup`)."""


def _imported_by(code: str) -> list[str]:
    probe = f"{code}; import sys; print(' '.join(m for m in {NOT_AT_START!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_daemon_module_does_not_import_what_only_other_commands_use() -> None:
    assert _imported_by("import pysup.daemon") == []


def test_a_plain_start_does_not_import_what_only_a_plan_or_a_flag_needs(tmp_path: object) -> None:
    """What `pysup run` does before it listens: the CLI, settings, the Supervisor and its
    start-time objects (no sockets: this builds, it does not start)."""
    code = (
        "import asyncio, pysup.cli, pysup.daemon; "
        "from pysup.settings import load_settings; "
        f"s = load_settings({{'state_dir': {str(tmp_path)!r}}}); "
        "asyncio.run(asyncio.sleep(0)); sup = pysup.daemon.Supervisor(s)"
    )
    assert _imported_by(code) == []


def test_the_probe_sees_a_deferred_module_when_it_is_imported() -> None:
    """The probe itself works: importing the plan loader shows up (else the tests above could
    not fail)."""
    assert "pysup.service.plan" in _imported_by("import pysup.service.plan")


def test_the_command_line_of_a_plain_start_does_not_import_other_commands(tmp_path: object) -> None:
    """`pysup.cli.main(["run", ...])` as `python -m pysup run` calls it, through settings, logging
    and the Supervisor, with its `run` stubbed to return at once (no sockets)."""
    code = (
        "import asyncio, pysup.daemon, pysup.cli\n"
        "async def _no_run(self): return 0\n"
        "pysup.daemon.Supervisor.run = _no_run\n"
        f"assert pysup.cli.main(['run', '--state-dir={tmp_path}/s']) == 0"
    )
    assert _imported_by(code) == []


def test_the_reaper_of_a_childless_supervisor_does_not_load_ctypes() -> None:
    """What `Supervisor.run` installs first: asking whether we are a subreaper needs ctypes
    (~0.8 MiB), and waits for the first child (tests/unit/test_reaper_deferred.py)."""
    code = (
        "import asyncio\n"
        "from pysup.service.reaper import Reaper\n"
        "async def main(): Reaper().install(make_subreaper=False)\n"
        "asyncio.run(main())"
    )
    assert _imported_by(code) == []
