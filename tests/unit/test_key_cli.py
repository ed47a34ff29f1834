"""The key and TLS commands: Habitat's command names and output lines, files in the key cache
that the library reads back, and one-line errors with exit status 1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pysup.cli import main
from pysup.crypto.certgen import TlsKind, latest_ctl_file
from pysup.crypto.keycache import KeyCache
from pysup.crypto.keyfiles import NamedRevision
from pysup.crypto.message import decrypt, encrypt_for_service_group
from pysup.crypto.tls import ServerTlsFiles, client_context, server_context
from pysup.key_cli import service_group_and_org
from pysup.testing.certs import memory_handshake

REV = r"\d{14}"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    cache = tmp_path / "keys"
    monkeypatch.setenv("HAB_CACHE_KEY_PATH", str(cache))
    monkeypatch.delenv("HAB_ORG", raising=False)
    return cache


def test_user_and_service_keys_generated_and_usable(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["user", "key", "generate", "bob"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(" Generating user key for bob")
    assert re.fullmatch(rf". Generated user encryption key pair bob-{REV}\.", out[1])

    assert main(["svc", "key", "generate", "redis.default", "acme"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(" Generating service key for redis.default in acme")
    m = re.fullmatch(rf". Generated service key pair (redis\.default@acme-{REV})\.", out[1])
    assert m
    named = NamedRevision.parse(m.group(1))
    assert (env / f"{named}.box.key").is_file() and (env / f"{named}.pub").is_file()

    cache = KeyCache(env)
    enc = encrypt_for_service_group(b"port = 1", "bob", "redis.default@acme", cache)
    assert decrypt(enc.data, cache, "redis.default@acme").payload == b"port = 1"


def test_cache_key_path_flag_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "elsewhere"
    assert main(["user", "key", "generate", "ann", "--cache-key-path", str(other)]) == 0
    assert len(list(other.glob("ann-*.box.key"))) == 1


def test_org_from_group_argument_or_env() -> None:
    assert service_group_and_org("redis.default@acme", None, None) == ("redis.default", "acme")
    assert service_group_and_org("redis.default", "acme", "env") == ("redis.default", "acme")
    assert service_group_and_org("redis.default", None, "env") == ("redis.default", "env")


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["svc", "key", "generate", "redis.default"], "No organization specified"),
        (["svc", "key", "generate", "redis.default@a", "b"], "names organization 'a'"),
        (["svc", "key", "generate", "redis", "acme"], "not of the form service.group"),
        (["svc", "key", "generate", "redis.default", "a c"], "invalid organization name"),
        (["user", "key", "generate", "a/b"], "invalid key name"),
    ],
)
def test_errors_are_one_line(argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert why in err
    assert err.count("\n") == 1 and err.startswith("pysup: ")


def test_generate_tls_default_dir_and_path(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sup", "secret", "generate-tls", "--subject-alternative-name", "sup.local"]) == 0
    cert = latest_ctl_file(env / "ctl", TlsKind.CERTIFICATE)
    key = latest_ctl_file(env / "ctl", TlsKind.KEY)
    assert str(cert) in capsys.readouterr().out
    sctx = server_context(ServerTlsFiles(cert, key))
    memory_handshake(sctx, client_context(cert), server_hostname="sup.local")

    assert main(["sup", "secret", "generate-tls", "--subject-alternative-name", "x", "--path",
                 str(tmp_path / "p")]) == 0  # fmt: skip
    assert latest_ctl_file(tmp_path / "p", TlsKind.KEY).is_file()
    assert main(["sup", "secret", "generate-tls", "--subject-alternative-name", "bad name"]) == 1
    assert "invalid subject alternative name" in capsys.readouterr().err
