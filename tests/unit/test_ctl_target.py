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
from pysup.ctl_target import DEFAULT_STATE_DIR, Target, UserError, control_target
from pysup.ringinfo import write_ring_file


@pytest.fixture
def ring_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory where `pysup ring --members 3` ran: state/ring/ring.json and the secrets."""
    monkeypatch.chdir(tmp_path)
    root = Path("state/ring")
    write_ring_file(root, [localring.member_addrs(i, root, 9631) for i in range(3)])
    for i in range(3):
        (root / f"member-{i}").mkdir()
        (root / f"member-{i}" / "CTL_SECRET").write_text(f"secret-{i}\n")
    yield tmp_path


def _target(*argv: str, env: dict[str, str] | None = None) -> Target:
    """The target for these command-line flags, parsed as `pysup svc status` parses them."""
    args = argparse.ArgumentParser(parents=[ctl_cli._common()]).parse_args(list(argv))
    return control_target(
        remote=args.remote_sup,
        state_dir=args.state_dir,
        member=args.member,
        ring_root_flag=args.ring_root,
        env=env or {},
    )


def _where(t: Target) -> tuple[str, int, str]:
    return t.host, t.port, t.secret


def test_member_n_finds_its_control_gateway_and_secret(ring_dir: Path) -> None:
    assert _where(_target("--member", "1")) == ("127.0.0.1", 9642, "secret-1")
    assert _where(_target("--member", "2")) == ("127.0.0.1", 9652, "secret-2")
    # Explicit flags still win over what the ring file says.
    assert _where(_target("--member", "2", "--remote-sup", "10.0.0.5:1234")) == (
        "10.0.0.5",
        1234,
        "secret-2",
    )
    assert _target("--member", "1").note is None


def test_member_zero_is_used_when_nothing_names_a_supervisor(ring_dir: Path) -> None:
    if (Path(DEFAULT_STATE_DIR) / "CTL_SECRET").exists():
        pytest.skip("this machine runs a supervisor with the default state dir")
    implied = _target()
    assert _where(implied) == ("127.0.0.1", 9632, "secret-0")
    assert implied.note is not None and "member 0 of the ring in state/ring" in implied.note
    # Anything that names a supervisor turns the guess off.
    with pytest.raises(UserError, match="does not exist"):
        _target(env={"HAB_LISTEN_CTL": "127.0.0.1:9700"})


def test_ring_root_finds_a_ring_started_elsewhere(
    ring_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ring_dir / "state")
    with pytest.raises(UserError, match=r"--member 1: no ring file state/ring/ring\.json"):
        _target("--member", "1")
    root = str(ring_dir / "state/ring")
    assert _where(_target("--member", "1", "--ring-root", root)) == ("127.0.0.1", 9642, "secret-1")
    assert _where(_target("--member", "1", env={"PYSUP_RING_ROOT": root}))[1] == 9642
    with pytest.raises(UserError, match="has no member 3"):
        _target("--member", "3", "--ring-root", root)


def test_no_secret_names_every_way_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as e:
        _target("--state-dir", str(tmp_path / "nowhere"))
    message = str(e.value)
    assert f"{tmp_path / 'nowhere' / 'CTL_SECRET'} does not exist" in message
    for fix in ("--state-dir DIR", "--member N", "HAB_CTL_SECRET", "--remote-sup"):
        assert fix in message
    assert "\n" not in message


def test_the_secret_variable_needs_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = _target("--remote-sup", "127.0.0.1:9700", env={"HAB_CTL_SECRET": "s3"})
    assert _where(target) == ("127.0.0.1", 9700, "s3")
