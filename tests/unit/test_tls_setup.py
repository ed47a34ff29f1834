"""TLS wiring from settings and environment (pysup.gateway.tls_setup) and the flags' validation:
which files each gateway uses, the ctl defaults under --cache-key-path, and one clear error for a
half-configured pair. Files from pysup.testing.certs; handshakes in memory (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pysup.crypto.certgen import generate_ctl_tls
from pysup.crypto.tls import TlsConfigError
from pysup.gateway.tls_setup import ctl_client_tls, ctl_tls, http_tls
from pysup.settings import Settings, SettingsError, load_settings
from pysup.testing.certs import HandshakeFailed, TestCA, memory_handshake


def test_http_tls_requires_a_client_certificate_only_with_ca_certs(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    server, client = ca.issue("server"), ca.issue("client", client=True)
    assert http_tls(Settings()) is None
    plain = Settings(tls_certs=str(server.certificate), tls_key=str(server.key))
    strict = Settings(
        tls_certs=str(server.certificate), tls_key=str(server.key), tls_ca_certs=str(ca.certificate)
    )
    from pysup.crypto.tls import client_context

    anonymous = client_context(ca.certificate)
    w = http_tls(plain)
    assert w is not None
    memory_handshake(w.context, anonymous)
    ws = http_tls(strict)
    assert ws is not None
    with pytest.raises(HandshakeFailed):
        memory_handshake(ws.context, anonymous)
    memory_handshake(ws.context, client_context(ca.certificate, client.certificate, client.key))


def test_ctl_flags_without_a_value_use_the_newest_pair_under_the_key_cache(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate_ctl_tls("localhost", keys / "ctl", datetime(2024, 1, 1, tzinfo=UTC))
    newest = generate_ctl_tls("localhost", keys / "ctl", datetime(2024, 6, 1, tzinfo=UTC))
    settings = Settings(key_cache=str(keys), ctl_server_certificate="", ctl_server_key="")
    watcher = ctl_tls(settings, env={})
    assert watcher is not None
    assert watcher.paths == (newest.certificate, newest.key)
    client = ctl_client_tls({"HAB_CTL_SERVER_CA_CERTIFICATE": str(keys / "ctl")}, "localhost")
    assert client is not None and client.server_name == "localhost"
    memory_handshake(watcher.context, client.context)


def test_the_client_speaks_tls_only_when_told_and_names_the_server(tmp_path: Path) -> None:
    assert ctl_client_tls({}, "127.0.0.1") is None
    pair = generate_ctl_tls("sup.example", tmp_path, datetime(2024, 1, 1, tzinfo=UTC))
    env = {
        "HAB_CTL_SERVER_CA_CERTIFICATE": str(pair.certificate),
        "HAB_CTL_SERVER_NAME_INDICATION": "sup.example",
    }
    client = ctl_client_tls(env, "10.0.0.5")
    assert client is not None and client.server_name == "sup.example"


def test_a_missing_ctl_pair_names_the_directory(tmp_path: Path) -> None:
    settings = Settings(key_cache=str(tmp_path), ctl_server_certificate="", ctl_server_key="")
    with pytest.raises(TlsConfigError, match="generate-tls"):
        ctl_tls(settings, env={})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"tls_certs": "c.pem"}, "--certs needs --key"),
        ({"tls_key": "k.pem"}, "--key needs --certs"),
        ({"tls_ca_certs": "ca.pem"}, "--ca-certs needs --certs and --key"),
        ({"ctl_server_certificate": ""}, "--ctl-server-certificate needs --ctl-server-key"),
        ({"ctl_client_ca_certificate": ""}, "--ctl-client-ca-certificate needs"),
    ],
)
def test_half_a_tls_configuration_is_refused(flags: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(flags, env={})


def test_habitat_environment_variables_configure_the_ctl_server() -> None:
    env = {"HAB_CTL_SERVER_CERTIFICATE": "/c", "HAB_CTL_SERVER_KEY": "/k"}
    s = load_settings({}, env=env)
    assert (s.ctl_server_certificate, s.ctl_server_key) == ("/c", "/k")
