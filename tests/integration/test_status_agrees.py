"""`pysup svc status` and `/services` agree about a crash-looping service's process.

A real `pysup run` supervises a plan whose run hook exits at once. Between two restarts the
process is down and has no pid; the service is still being supervised. `svc status` used to print
the service's lifecycle state there (`up`, pid `<none>`) while `/services` said `down`. Both now
read the process from one function (`api_json.process_json`). Each sample reads status, then
/services, then status again; when the two status reads agree (nothing changed in between),
/services must say the same.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pysup.ctl_client import send
from pysup.gateway.ctl_proto import SvcStatus
from tests.integration.daemons import Fleet, Sup, fleet  # noqa: F401 (fixture)
from tests.util import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SAMPLES = 12
"""Samples compared: enough to cover several restarts and the down time between them."""


def _crasher(root: Path) -> Path:
    d = root / "plans" / "crasher"
    (d / "hooks").mkdir(parents=True)
    (d / "plan.toml").write_text('name = "crasher"\norigin = "test"\nversion = "1.0.0"\n')
    run = d / "hooks" / "run"
    run.write_text("#!/bin/sh\necho 'crasher: giving up'\nexit 3\n")
    run.chmod(0o755)
    return d


def _status(sup: Sup) -> dict[str, Any]:
    secret = (sup.state_dir / "CTL_SECRET").read_text().strip()
    reply = asyncio.run(send(sup.host, sup.ctl_port, secret, SvcStatus("crasher")))
    [row] = reply["services"]
    assert isinstance(row, dict)
    return row


def _services(sup: Sup) -> dict[str, Any]:
    status, body = sup.get("/services")
    assert status == 200, body
    [svc] = json.loads(body)
    assert isinstance(svc, dict)
    return svc


def test_svc_status_and_services_agree_during_a_crash_loop(fleet: Fleet) -> None:  # noqa: F811
    sup = fleet.start("a", extra=[str(_crasher(fleet.root))])
    wait_for(lambda: (sup.state_dir / "CTL_SECRET").exists(), 10, what="CTL_SECRET")
    wait_for(
        lambda: _services(sup)["restart_count"] >= 2,
        30,
        0.1,
        "the run hook to crash and be restarted twice",
    )
    compared: list[tuple[str, int | None]] = []
    for _ in range(SAMPLES * 10):
        before = _status(sup)
        process = _services(sup)["process"]
        after = _status(sup)
        if (before["state"], before["pid"]) != (after["state"], after["pid"]):
            continue  # a restart happened between the reads: nothing to compare
        assert (before["state"], before["pid"]) == (process["state"], process["pid"]), (
            f"svc status says {before['state']} pid {before['pid']}; /services says "
            f"{process['state']} pid {process['pid']}"
        )
        compared.append((before["state"], before["pid"]))
        if len(compared) >= SAMPLES:
            break
    assert len(compared) >= SAMPLES, compared
    # The loop was sampled while the process was down between restarts (the case that differed).
    assert ("down", None) in compared, compared
