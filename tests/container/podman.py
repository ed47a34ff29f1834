"""Helpers for the container tests: podman commands, the compose file reader, HTTP from the host.

docker-compose.yml is the source of truth for the containers the tests start: `read_compose` is a
small line reader for the restricted style that file documents (no YAML library), and `ComposeRun`
starts its services with plain `podman run`. Each run uses its own network and container names
(prefix pysuptest<pid>-<n>) with a network alias per compose service name, so `--peer super`
resolves as under compose; published ports are mapped to free 127.0.0.1 host ports so runs never
collide with a supervisor on the host's 9631. `close` removes containers and networks.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.util import free_port

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/pysup:latest"
HOOKS = REPO / "hooks"
SETUP_TIMEOUT = 600.0  # debootstrap + apt on a fresh machine take ~1-2 min; generous bound
BUILD_TIMEOUT = 600.0
PODMAN_TIMEOUT = 120.0  # any single podman command
_runs = itertools.count()


def podman(*args: str, check: bool = True, timeout: float = PODMAN_TIMEOUT) -> str:
    """Run one podman command, return stdout; fail with its stderr when `check` and it fails."""
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def podman_rc(*args: str, timeout: float = PODMAN_TIMEOUT) -> tuple[int, str]:
    """(exit code, stdout + stderr) of one podman command."""
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def skip_reason() -> str | None:
    """Why the container tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "container tests need root (rootful podman; setup-podman installs packages)"
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        return "podman is missing and cannot be installed here (no apt-get)"
    return None


def read_compose(path: Path) -> dict[str, dict[str, Any]]:
    """Services of a compose file written in docker-compose.yml's documented restricted style.

    Two-space indents; under `services:` each service is `  name:` and its settings `    key: value`
    where a value starting with `[` or `{` is JSON and anything else a plain string. Whole-line
    comments and blank lines are skipped. Raises ValueError on lines it does not understand.
    """
    services: dict[str, dict[str, Any]] = {}
    section = ""
    current: dict[str, Any] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, sep, value = raw.strip().partition(":")
        if not sep:
            raise ValueError(f"{path}:{number}: expected `key: value`: {raw!r}")
        value = value.strip()
        if indent == 0:
            section, current = key, None
        elif section != "services":
            continue
        elif indent == 2:
            current = services.setdefault(key, {})
        elif indent == 4 and current is not None:
            current[key] = json.loads(value) if value[:1] in "[{" and value else value
        else:
            raise ValueError(f"{path}:{number}: unexpected indentation: {raw!r}")
    return services


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def http_json(url: str) -> Any:
    """The JSON body of a 200 answer, else None."""
    status, body = http_get(url)
    return json.loads(body) if status == 200 else None


def grace_seconds(spec: dict[str, Any]) -> int:
    """A compose service's stop_grace_period (`20s`) in seconds; compose's default is 10 s."""
    return int(str(spec.get("stop_grace_period", "10s")).removesuffix("s"))


class ComposeRun:
    """The compose file's services started with plain `podman run`, removed again by `close`."""

    def __init__(self, compose: dict[str, dict[str, Any]], image: str) -> None:
        self.compose = compose
        self.image = image
        self.prefix = f"pysuptest{os.getpid()}-{next(_runs)}"
        self.networks: list[str] = []
        self.containers: dict[str, str] = {}  # compose service name -> container name
        self.ports: dict[tuple[str, int], int] = {}  # (service, container port) -> host port
        self.started: dict[str, float] = {}  # service -> time.monotonic() before `podman run`

    def start(self, entrypoint: list[str] | None = None, publish_all: tuple[int, ...] = ()) -> None:
        """Start every service in file order (super first), like `compose up -d`.

        `publish_all`: container ports to publish on a free host port for every service, on top
        of the compose file's own `ports` (the tests read each supervisor's gateway this way).
        """
        for service, spec in self.compose.items():
            name = f"{self.prefix}-{service}"
            args = ["run", "-d", "--name", name]
            for network in spec.get("networks", []):
                net = f"{self.prefix}-{network}"
                if net not in self.networks:
                    podman("network", "create", net)
                    self.networks.append(net)
                args += ["--network", net, "--network-alias", service]
            published = [int(str(m).rsplit(":", 1)[-1]) for m in spec.get("ports", [])]
            for container_port in dict.fromkeys([*published, *publish_all]):
                host_port = free_port()
                self.ports[(service, container_port)] = host_port
                args += ["-p", f"127.0.0.1:{host_port}:{container_port}"]
            args += ["--stop-timeout", str(grace_seconds(spec))]
            if entrypoint:
                args += ["--entrypoint", entrypoint[0]]
            args.append(self.image)
            args += entrypoint[1:] if entrypoint else []
            args += list(spec.get("command", []))
            self.containers[service] = name
            self.started[service] = time.monotonic()
            podman(*args)

    def host_port(self, service: str, container_port: int) -> int:
        return self.ports[(service, container_port)]

    def url(self, service: str, path: str) -> str:
        """URL of `path` on a service's gateway (9631) through its published host port."""
        return f"http://127.0.0.1:{self.host_port(service, 9631)}{path}"

    def running(self, service: str) -> bool:
        name = self.containers[service]
        return podman("inspect", "--format", "{{.State.Running}}", name).strip() == "true"

    def exit_code(self, service: str) -> int:
        name = self.containers[service]
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).strip())

    def exited(self) -> list[str]:
        """Compose service names whose container is no longer running."""
        return [service for service in self.containers if not self.running(service)]

    def logs(self) -> str:
        return "\n".join(
            f"--- {service}\n{podman_rc('logs', '--tail', '40', name)[1]}"
            for service, name in self.containers.items()
        )

    def close(self) -> None:
        for name in self.containers.values():
            podman("rm", "-f", "-v", "-t", "0", name, check=False)  # -v: its state volume
        for net in self.networks:
            podman("network", "rm", "-f", net, check=False)
