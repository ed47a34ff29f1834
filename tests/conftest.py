"""Shared pytest set-up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _isolated_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults and leaves them behind: code under test (the
    CLI, benchmark workers) may configure logging globally, which would otherwise change what
    `capture_logs` sees in later tests."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
