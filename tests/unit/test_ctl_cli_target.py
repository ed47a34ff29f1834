"""Which supervisor a control command talks to, and with which secret: `--member N` of a
`pysup ring` run in this directory, member 0 of it when nothing else is named, and the error
that names every way to fix a missing secret. No connection is made (the target is computed
before any socket is opened)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysup import ctl_cli, localring
from pysup.ctl_cli import UserError
from pysup.ringinfo import write_ring_file


@pytest.fixture
def ring_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory where `pysup ring --members 3` ran: state/ring/ring.json and the secrets."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ctl_cli, "_env", lambda: {})
    root = Path("state/ring")
    write_ring_file(root, [localring.member_addrs(i, root, 9631) for i in range(3)])
    for i in range(3):
        (root / f"member-{i}").mkdir()
        (root / f"member-{i}" / "CTL_SECRET").write_text(f"secret-{i}\n")
    yield tmp_path


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(parents=[ctl_cli._common()])
    return parser.parse_args(list(argv))


def test_member_n_finds_its_control_gateway_and_secret(ring_dir: Path) -> None:
    assert ctl_cli._target(_args("--member", "1")) == ("127.0.0.1", 9642, "secret-1")
    assert ctl_cli._target(_args("--member", "2")) == ("127.0.0.1", 9652, "secret-2")
    # Explicit flags still win over what the ring file says.
    assert ctl_cli._target(_args("--member", "2", "--remote-sup", "10.0.0.5:1234")) == (
        "10.0.0.5",
        1234,
        "secret-2",
    )


def test_member_zero_is_used_when_nothing_names_a_supervisor(
    ring_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if (Path(ctl_cli.DEFAULT_STATE_DIR) / "CTL_SECRET").exists():
        pytest.skip("this machine runs a supervisor with the default state dir")
    assert ctl_cli._target(_args()) == ("127.0.0.1", 9632, "secret-0")
    assert "member 0 of the ring in state/ring" in capsys.readouterr().err


def test_ring_root_finds_a_ring_started_elsewhere(
    ring_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ring_dir / "state")
    with pytest.raises(UserError, match=r"--member 1: no ring file state/ring/ring\.json"):
        ctl_cli._target(_args("--member", "1"))
    target = ctl_cli._target(_args("--member", "1", "--ring-root", str(ring_dir / "state/ring")))
    assert target == ("127.0.0.1", 9642, "secret-1")
    with pytest.raises(UserError, match="has no member 3"):
        ctl_cli._target(_args("--member", "3", "--ring-root", str(ring_dir / "state/ring")))


def test_no_secret_names_every_way_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ctl_cli, "_env", lambda: {})
    with pytest.raises(UserError) as e:
        ctl_cli._target(_args("--state-dir", str(tmp_path / "nowhere")))
    message = str(e.value)
    assert f"{tmp_path / 'nowhere' / 'CTL_SECRET'} does not exist" in message
    for fix in ("--state-dir DIR", "--member N", "HAB_CTL_SECRET", "--remote-sup"):
        assert fix in message
    assert "\n" not in message


def test_the_secret_variable_needs_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ctl_cli, "_env", lambda: {"HAB_CTL_SECRET": "s3"})
    assert ctl_cli._target(_args("--remote-sup", "127.0.0.1:9700")) == ("127.0.0.1", 9700, "s3")
