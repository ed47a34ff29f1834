"""docker-compose.yml and its TLS override docker-compose.tls.yml, offline: both are YAML whose
services the container tests' line reader (tests/container/podman.py) reads identically; the
override names only services of the demo file; with it, every member's `pysup run` (its compose
command parsed by the real CLI, its environment read by the real settings loader) serves HTTPS
from files inside a read-only mount of the directory, named by the variables the hooks read."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pysup.cli import build_parser
from pysup.settings import load_settings
from tests.container.podman import read_compose

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "docker-compose.yml"
TLS = ROOT / "docker-compose.tls.yml"
HOOKS_TLS_ENV = "PYSUP_TLS_CERTS"
"""What hooks/healthcheck and hooks/pre-stop read to speak HTTPS."""


def services(path: Path) -> dict[str, dict[str, Any]]:
    parsed = yaml.safe_load(path.read_text())["services"]
    assert parsed == read_compose(path), f"{path.name}: YAML and the line reader disagree"
    result: dict[str, dict[str, Any]] = parsed
    return result


def test_the_tls_override_serves_https_on_every_member_with_hooks_that_follow() -> None:
    demo, tls = services(DEMO), services(TLS)
    assert set(tls) == set(demo)  # an override of the same services, no new ones
    for name, spec in tls.items():
        env = spec["environment"]
        args = build_parser().parse_args(["run", *demo[name]["command"]])
        flags = {k: v for k, v in vars(args).items() if k not in ("func", "config_file", "command")}
        s = load_settings(flags, env=env)
        assert s.tls_certs and s.tls_key, f"{name}: TLS not on"
        assert env[HOOKS_TLS_ENV] == s.tls_certs  # the HEALTHCHECK and pre-stop speak HTTPS
        assert s.tls_ca_certs is None  # the hooks present no client certificate here
        mounts = {}
        for volume in spec["volumes"]:
            host, container, mode = volume.split(":")
            mounts[PurePosixPath(container)] = (host, mode)
        for path in (s.tls_certs, s.tls_key):
            host, mode = mounts[PurePosixPath(path).parent]  # the directory: renames are seen
            assert mode == "ro" and host.startswith("./"), volume
        assert "ports" not in spec and "command" not in spec  # the demo's own, unchanged


def test_the_demo_file_points_at_the_override() -> None:
    assert TLS.name in DEMO.read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"-f docker-compose.yml -f {TLS.name}" in readme
