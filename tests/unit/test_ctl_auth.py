"""Control-gateway secret lookup for clients, and the constant-time comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysup.gateway.ctl_auth import CtlSecretError, constant_time_equal, resolve_client_secret


def test_constant_time_equal() -> None:
    assert constant_time_equal("abc", b"abc")
    assert not constant_time_equal("abc", "abd")
    assert not constant_time_equal(b"abc", b"abcd")
    assert constant_time_equal("é", "é".encode())


def test_env_wins_over_file_hab_first(tmp_path: Path) -> None:
    (tmp_path / "CTL_SECRET").write_text("from-file\n")
    env = {"HAB_CTL_SECRET": "hab", "PYSUP_CTL_SECRET": "pysup"}
    assert resolve_client_secret(tmp_path, env) == "hab"
    assert resolve_client_secret(tmp_path, {"PYSUP_CTL_SECRET": "pysup"}) == "pysup"
    assert resolve_client_secret(tmp_path, {"HAB_CTL_SECRET": ""}) == "from-file"


def test_missing_secret_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CtlSecretError, match="HAB_CTL_SECRET"):
        resolve_client_secret(None, {})
    with pytest.raises(CtlSecretError, match=str(tmp_path / "CTL_SECRET")):
        resolve_client_secret(tmp_path, {})
    (tmp_path / "CTL_SECRET").write_text("\n")
    with pytest.raises(CtlSecretError, match="empty"):
        resolve_client_secret(tmp_path, {})
