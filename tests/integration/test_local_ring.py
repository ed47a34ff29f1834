"""`pysup ring` as a newcomer meets it: real processes on 127.0.0.1.

Proves: with a port of the ring taken, it starts nothing and says which port, whose it would be
and which process holds it, with a --base-port that is free; a running ring's members are found
by number (`svc status --member 1`, `census --member 2`, plain `svc status` for member 0) from
the directory where the ring runs, with no secret hunt; and every line the members write reaches
the terminal labelled with its member.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysup.localring import ring_ports
from pysup.portcheck import all_free
from tests.integration.daemons import Fleet, fleet, http_get  # noqa: F401 (fleet: fixture)
from tests.util import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
HABSUP = str(REPO / "plans" / "habsup")
FORM_TIMEOUT_S = 30.0
"""Three members on 2 shared cores list each other Alive and run habsup well within this."""


def _free_base(members: int) -> int:
    """A --base-port under which every port of the ring (habsup's too) is free now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 100) + 31
        if all_free(ring_ports(members, base, [HABSUP])):
            return base
    raise AssertionError("no free base port")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}


def _pysup(cwd: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pysup", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def _listen(host: str, port: int, held: list[socket.socket]) -> None:
    s = socket.socket()
    s.bind((host, port))
    s.listen()
    held.append(s)


def test_a_taken_port_stops_the_ring_before_it_starts_and_names_the_holder(
    tmp_path: Path, held: list[socket.socket]
) -> None:
    base = _free_base(2)
    _listen("127.0.0.1", base + 11, held)  # member 1's control gateway
    _listen("0.0.0.0", 8080 + base - 9631, held)  # member 0's habsup
    r = _pysup(tmp_path, "ring", "--members", "2", "--base-port", str(base), HABSUP)
    assert r.returncode == 1, r
    err = r.stderr
    me = f"(pid {os.getpid()})"
    assert "cannot start: 2 of the ring's ports are taken" in err, err
    assert f"127.0.0.1:{base + 11}/tcp member 1 control gateway: taken by " in err, err
    assert f"0.0.0.0:{8080 + base - 9631}/tcp member 0 habsup http.port: taken by " in err, err
    assert err.count(me) == 2, err
    suggested = re.search(r"--base-port (\d+)", err)
    assert suggested, err
    assert all_free(ring_ports(2, int(suggested.group(1)), [HABSUP]))
    # Nothing was started or written.
    assert not (tmp_path / "state").exists()


def test_members_are_found_by_number_and_their_lines_are_labelled(
    fleet: Fleet,  # noqa: F811
    tmp_path: Path,
) -> None:
    base = _free_base(3)
    out = tmp_path / "ring.out"
    with open(out, "wb") as log:
        ring = subprocess.Popen(
            [sys.executable, "-m", "pysup", "ring", "--base-port", str(base), HABSUP],
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    fleet.procs.append(ring)

    def text() -> str:
        return out.read_text(errors="replace")

    def formed() -> bool:
        assert ring.poll() is None, text()
        status, body = http_get(f"http://127.0.0.1:{base + 20}/services")
        if status != 200 or not json.loads(body):
            return False
        if json.loads(body)[0]["process"]["state"] != "up":
            return False
        status, body = http_get(f"http://127.0.0.1:{base}/butterfly")
        members = json.loads(body)["member"]["members"] if status == 200 else {}
        return len(members) == 3 and all(m["health"] == "Alive" for m in members.values())

    try:
        wait_for(formed, FORM_TIMEOUT_S, 0.2, "3 Alive members, habsup up on member 2")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{text()}") from None

    r = _pysup(tmp_path, "svc", "status", "--member", "1", "--json")
    assert r.returncode == 0, r
    [row] = json.loads(r.stdout)
    assert (row["group"], row["state"]) == ("habsup.default", "up")
    assert isinstance(row["pid"], int)
    r = _pysup(tmp_path, "census", "--member", "2", "--json")
    assert r.returncode == 0, r
    member_2 = json.loads(http_get(f"http://127.0.0.1:{base + 20}/butterfly")[1])
    assert json.loads(r.stdout)["local_member_id"] == member_2["member"]["local_member_id"]
    if not Path("/hab/sup/default/CTL_SECRET").exists():
        r = _pysup(tmp_path, "svc", "status")
        assert r.returncode == 0, r
        assert "member 0 of the ring in state/ring" in r.stderr
        assert "habsup.default" in r.stdout

    ring.send_signal(signal.SIGINT)
    assert ring.wait(timeout=30) == 0, text()
    lines = text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("Ctrl-C stops"))
    banner = "\n".join(lines[:end])
    assert f"http://127.0.0.1:{base + 10}" in banner and "svc status --member 1" in banner
    members = [line for line in lines[end + 1 :] if not line.startswith("pysup ring: ")]
    unlabelled = [line for line in members if not re.match(r"member-[012] \| ", line)]
    assert not unlabelled, unlabelled[:5]
    for i in range(3):
        assert any(
            line.startswith(f"member-{i} | ") and "supervisor.started" in line for line in members
        ), f"member {i} said nothing"
