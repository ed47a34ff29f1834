"""The container image and its hooks, with podman standing in for Docker.

Proves: scripts/setup-podman + scripts/build-image produce localhost/pysup:latest offline; the image
keeps the Dockerfile's contract (user hab uid 42, entrypoint `pysup run` with an empty CMD and the
plan from PYSUP_DEFAULT_PLANS, state volume, ports, HEALTHCHECK); pysup imports as the non-root
user; hooks/healthcheck and hooks/pre-stop behave against a fake gateway (on the host, no podman)
and inside the image; the compose file's wiring (network, service names resolving, published
port, podman's HEALTHCHECK run) works with a placeholder supervisor. The real three-supervisor
ring and PID-1 behaviour are in test_compose_ring.py; helpers and fixtures in podman.py and
conftest.py.

Needs root (rootful podman, apt, debootstrap); the session fixture installs podman when missing.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.container.podman import (
    HOOKS,
    IMAGE,
    REPO,
    ComposeRun,
    http_get,
    podman,
    podman_rc,
    read_compose,
)
from tests.util import free_port, wait_for

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

# Stands in for `pysup run` in the wiring test: resolves every --peer, then answers every GET on
# 9631 with 200 and a JSON description of itself. Runs as the image's user with the image's python3.
PLACEHOLDER_SUP = """
import http.server, json, socket, sys
args = sys.argv[1:]
peers = {a: socket.gethostbyname(a.rsplit(":", 1)[0])
         for i, a in enumerate(args) if i and args[i - 1] == "--peer"}
body = json.dumps({"args": args, "peers": peers, "ip": socket.gethostbyname(socket.gethostname())})
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())
http.server.ThreadingHTTPServer(("0.0.0.0", 9631), Handler).serve_forever()
"""


def run_in_image(image: str, *cmd: str) -> tuple[int, str]:
    """Run `cmd` in a throwaway container of `image` (instead of its entrypoint)."""
    return podman_rc("run", "--rm", "--no-healthcheck", "--entrypoint", cmd[0], image, *cmd[1:])


# --- the image --------------------------------------------------------------------------------


def test_image_keeps_the_dockerfile_contract(image: str) -> None:
    """User, entrypoint, empty CMD, env, volume, ports, HEALTHCHECK: as the Dockerfile says."""
    info = json.loads(podman("image", "inspect", image))[0]
    config = info["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "hab"
    assert config["Entrypoint"] == ["pysup", "run"]
    assert not config.get("Cmd"), "CMD must stay empty: flags given to the container replace it"
    assert env["PYSUP_DEFAULT_PLANS"] == "/hab/plans/habsup"
    assert env["PYSUP_STATE_DIR"] == "/hab/sup"
    assert env["PATH"].split(":")[0] == "/opt/pysup/bin"
    assert set(config["Volumes"]) == {"/hab/sup"}
    assert set(config["ExposedPorts"]) == {"9631/tcp", "9638/tcp", "9638/udp"}
    # podman reports it at the top level, docker under Config
    healthcheck = info.get("Healthcheck") or config.get("Healthcheck") or {}
    assert healthcheck.get("Test") == ["CMD", "/hab/hooks/healthcheck"]


def test_pysup_imports_as_non_root_user_with_writable_state(image: str) -> None:
    """The venv's python imports pysup as uid 42 and the state volume is writable by it."""
    rc, out = run_in_image(
        image,
        "python3",
        "-c",
        "import os, pathlib, pysup; pathlib.Path(os.environ['PYSUP_STATE_DIR'], 'probe').touch();"
        "print(os.getuid(), pysup.__file__)",
    )
    assert rc == 0, out
    uid, path = out.split()[-2:]
    assert uid == "42"
    assert path.startswith("/opt/pysup/")


def test_demo_plan_and_hooks_are_in_place(image: str) -> None:
    """PYSUP_DEFAULT_PLANS names a real directory and both hooks are executable."""
    rc, out = run_in_image(
        image,
        "sh",
        "-c",
        'test -d "$PYSUP_DEFAULT_PLANS" && test -n "$(ls "$PYSUP_DEFAULT_PLANS")" '
        "&& test -x /hab/hooks/healthcheck && test -x /hab/hooks/pre-stop && echo ok",
    )
    assert rc == 0 and out.strip().endswith("ok"), out


def test_pysup_cli_answers_help(image: str) -> None:
    """`pysup --help` and the entrypoint `pysup run --help` work in the image."""
    if not (REPO / "pysup" / "cli.py").exists():
        pytest.skip("pysup/cli.py not written yet")
    rc, out = run_in_image(image, "pysup", "--help")
    assert rc == 0, out
    rc, out = podman_rc("run", "--rm", "--no-healthcheck", image, "--help")
    assert rc == 0, out
    assert "--peer" in out


def test_healthcheck_hook_fails_when_nothing_listens(image: str) -> None:
    """In the image, with no gateway on 9631, the hook exits 1 and says why in one line."""
    rc, out = run_in_image(image, "/hab/hooks/healthcheck")
    assert rc == 1, out
    assert "unhealthy" in out and "127.0.0.1:9631/healthz" in out


# --- hooks on the host, against a fake gateway --------------------------------------------------


class FakeGateway:
    """A stdlib HTTP server on 127.0.0.1 answering from a script of (status, body) per route."""

    def __init__(self, routes: dict[str, list[tuple[int, str]]]) -> None:
        self.routes = routes  # "METHOD /path" -> answers; the last one repeats
        self.seen: list[tuple[str, str | None]] = []  # ("METHOD /path", Authorization)
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                route = f"{self.command} {self.path}"
                gateway.seen.append((route, self.headers.get("Authorization")))
                answers = gateway.routes.get(route, [(404, "")])
                status, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_gateway() -> Iterator[Any]:
    made: list[FakeGateway] = []

    def make(routes: dict[str, list[tuple[int, str]]]) -> FakeGateway:
        made.append(FakeGateway(routes))
        return made[-1]

    try:
        yield make
    finally:
        for gateway in made:
            gateway.close()


def run_hook(name: str, timeout: float = 30.0, **env: str) -> subprocess.CompletedProcess[str]:
    """Run hooks/<name> with the host python and only the given HAB_/PYSUP_ variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
    return subprocess.run(
        [sys.executable, str(HOOKS / name)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_healthcheck_hook_passes_on_200_and_sends_the_token(fake_gateway: Any) -> None:
    gw = fake_gateway({"GET /healthz": [(200, "{}")]})
    proc = run_hook("healthcheck", PYSUP_HTTP_PORT=str(gw.port), HAB_SUP_GATEWAY_AUTH_TOKEN="s3")
    assert proc.returncode == 0, proc.stdout
    assert gw.seen == [("GET /healthz", "Bearer s3")]


def test_healthcheck_hook_fails_on_503_and_reads_hab_listen_http(fake_gateway: Any) -> None:
    gw = fake_gateway({"GET /healthz": [(503, "")]})
    proc = run_hook("healthcheck", HAB_LISTEN_HTTP=f"127.0.0.1:{gw.port}")
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"unhealthy: http://127.0.0.1:{gw.port}/healthz answered 503"
    assert gw.seen == [("GET /healthz", None)]


def test_healthcheck_hook_fails_when_nothing_listens_on_host() -> None:
    proc = run_hook("healthcheck", PYSUP_HTTP_PORT=str(free_port()))
    assert proc.returncode == 1
    assert proc.stdout.startswith("unhealthy:") and proc.stdout.count("\n") == 1


def test_pre_stop_departs_then_waits_until_no_service_is_up(fake_gateway: Any) -> None:
    up = json.dumps([{"process": {"state": "up"}}])
    down = json.dumps([{"process": {"state": "down"}}])
    gw = fake_gateway(
        {"POST /sup/depart": [(202, "")], "GET /services": [(200, up), (200, up), (200, down)]}
    )
    proc = run_hook("pre-stop", PYSUP_HTTP_PORT=str(gw.port))
    assert proc.returncode == 0, proc.stdout
    assert [route for route, _ in gw.seen] == ["POST /sup/depart"] + ["GET /services"] * 3
    assert "no services up" in proc.stdout


def test_pre_stop_falls_back_to_sigterm_when_depart_is_missing(fake_gateway: Any) -> None:
    """A 404 from /sup/depart makes the hook TERM the supervisor pid (PYSUP_PRESTOP_PID)."""
    gw = fake_gateway({"GET /services": [(200, "[]")]})  # POST /sup/depart -> 404
    sup = subprocess.Popen(["sleep", "60"])
    try:
        proc = run_hook("pre-stop", PYSUP_HTTP_PORT=str(gw.port), PYSUP_PRESTOP_PID=str(sup.pid))
        assert proc.returncode == 0, proc.stdout
        assert sup.wait(timeout=5) == -signal.SIGTERM
    finally:
        sup.kill()
        sup.wait()


def test_pre_stop_gives_up_after_its_timeout(fake_gateway: Any) -> None:
    up = json.dumps([{"process": {"state": "up"}}])
    gw = fake_gateway({"POST /sup/depart": [(202, "")], "GET /services": [(200, up)]})
    started = time.monotonic()
    proc = run_hook("pre-stop", PYSUP_HTTP_PORT=str(gw.port), PYSUP_PRESTOP_TIMEOUT="1")
    assert proc.returncode == 1
    assert "timed out after 1 s; 1 service(s) still up" in proc.stdout
    assert 1.0 <= time.monotonic() - started < 10.0


def test_pre_stop_is_done_when_no_supervisor_answers() -> None:
    proc = run_hook("pre-stop", PYSUP_HTTP_PORT=str(free_port()))
    assert proc.returncode == 0
    assert "nothing to stop" in proc.stdout


# --- the compose demo -------------------------------------------------------------------------


def test_compose_file_is_readable_and_matches_the_seed_demo() -> None:
    services = read_compose(REPO / "docker-compose.yml")
    assert list(services) == ["super", "client-1", "client-2"]
    assert services["super"]["command"] == ["--topology", "leader"]
    assert services["super"]["ports"] == ["9631:9631"]
    for client in ("client-1", "client-2"):
        assert services[client]["command"] == ["--topology", "leader", "--peer", "super"]
        assert "ports" not in services[client]
    for spec in services.values():
        assert spec["image"] == IMAGE
        assert spec["stop_grace_period"] == "20s"


NAME_BOUND_S = 20.0
"""Container running -> its compose name resolves in the others (aardvark-dns; usually at once,
once measured lagging behind the published port)."""


def exec_get(container: str, url: str) -> Any:
    """GET `url` from inside `container` with its python3; the JSON body."""
    script = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode())"
    return json.loads(podman("exec", container, "python3", "-c", script).strip().splitlines()[-1])


def test_compose_wiring_with_a_placeholder_supervisor(compose_run: ComposeRun) -> None:
    """Names resolve across the network, the port is published and podman runs the HEALTHCHECK.

    Each container runs PLACEHOLDER_SUP with the compose file's command as its arguments, so this
    checks the infrastructure independently of `pysup run`.
    """
    compose_run.start(entrypoint=["python3", "-c", PLACEHOLDER_SUP])
    port = compose_run.host_port("super", 9631)
    _, body = wait_for(
        lambda: (r := http_get(f"http://127.0.0.1:{port}/healthz"))[0] == 200 and r,
        timeout=60,
        interval=0.5,
        what="super's published port",
    )
    super_ip = json.loads(body)["ip"]
    resolve = "import socket; socket.getaddrinfo('super', 9631)"
    for client in ("client-1", "client-2"):
        name = compose_run.containers[client]
        # The network's DNS can register a container's name a moment after it runs.
        wait_for(
            lambda name=name: podman_rc("exec", name, "python3", "-c", resolve)[0] == 0,
            timeout=NAME_BOUND_S,
            interval=0.5,
            what=f"'super' resolving in {client}",
        )
        rc, out = podman_rc("exec", name, "/hab/hooks/healthcheck")
        assert rc == 0, out
        assert exec_get(name, "http://super:9631/")["ip"] == super_ip
    client_1 = exec_get(compose_run.containers["client-1"], "http://127.0.0.1:9631/")
    assert client_1["args"] == ["--topology", "leader", "--peer", "super"]
    assert client_1["peers"] == {"super": super_ip}
    rc, out = podman_rc("healthcheck", "run", compose_run.containers["super"])
    assert rc == 0, out
