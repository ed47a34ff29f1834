"""Fixtures of the container tests: the image (built once per session) and compose runs."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.container.podman import (
    BUILD_TIMEOUT,
    IMAGE,
    REPO,
    SETUP_TIMEOUT,
    ComposeRun,
    read_compose,
    skip_reason,
)


@pytest.fixture(scope="session")
def image(pytestconfig: pytest.Config) -> str:
    """localhost/pysup:latest, freshly built.

    setup-podman runs every time: on a machine that has podman and the base image it checks and
    returns in a second; on a fresh CI machine it installs podman and builds the base (~1 min).
    Their step lines (what, how long) go straight to the terminal as they run, past pytest's
    capture, so a build never looks like a hang.
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    for script, limit in (("setup-podman", SETUP_TIMEOUT), ("build-image", BUILD_TIMEOUT)):
        uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with uncaptured:
            print()
            proc = subprocess.run(
                [str(REPO / "scripts" / script)],
                stderr=subprocess.PIPE,
                text=True,
                timeout=limit,
                cwd=REPO,
                check=False,
            )
        if proc.returncode != 0:
            pytest.fail(f"scripts/{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return IMAGE


@pytest.fixture
def compose_run(image: str) -> Iterator[ComposeRun]:
    """The compose file's services, not started yet; removed after the test."""
    run = ComposeRun(read_compose(REPO / "docker-compose.yml"), image)
    try:
        yield run
    finally:
        run.close()
