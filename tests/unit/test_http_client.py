"""`pysup census`'s client of the HTTP gateway: which scheme and TLS material it picks from the
address, flags and environment, and that bad TLS files are one line. No sockets: the real
HTTPS round trips are in tests/integration/test_security_ring.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysup.ctl_target import UserError
from pysup.http_client import (
    HTTP_CA_ENV,
    HTTP_CLIENT_CERT_ENV,
    HTTP_CLIENT_KEY_ENV,
    http_target,
)
from pysup.testing.certs import TestCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def test_a_bare_address_is_plain_http_with_the_token() -> None:
    t = http_target("127.0.0.1:9700", {"HAB_SUP_GATEWAY_AUTH_TOKEN": "tok"})
    assert (t.base_url, t.tls, t.token) == ("http://127.0.0.1:9700", None, "tok")
    assert http_target("http://[::1]:9700/", {}).base_url == "http://[::1]:9700"


def test_https_scheme_or_a_ca_turns_tls_on(ca: TestCA) -> None:
    t = http_target("https://localhost:9700", {})
    assert t.base_url == "https://localhost:9700" and t.tls is not None  # system trust store
    t = http_target("localhost:9700", {HTTP_CA_ENV: str(ca.certificate)})
    assert t.base_url == "https://localhost:9700" and t.tls is not None
    assert t.tls.check_hostname  # the certificate must name the host connected to


def test_a_client_certificate_comes_from_flags_or_the_hooks_variables(ca: TestCA) -> None:
    client = ca.issue("cli", client=True)
    env = {HTTP_CLIENT_CERT_ENV: str(client.certificate), HTTP_CLIENT_KEY_ENV: str(client.key)}
    assert http_target("https://localhost", env, cacert=str(ca.certificate)).tls is not None
    with pytest.raises(UserError, match="needs its key"):
        http_target("https://localhost", {}, str(ca.certificate), cert=str(client.certificate))
    # the flag wins over the environment: a wrong key given by flag is refused, naming it
    with pytest.raises(UserError, match="does not belong"):
        http_target("https://localhost", env, str(ca.certificate), key=str(ca.issue("other").key))


def test_bad_addresses_and_files_are_one_line(tmp_path: Path, ca: TestCA) -> None:
    with pytest.raises(UserError, match="only http:// and https://"):
        http_target("ftp://localhost:1", {})
    with pytest.raises(UserError, match="plain HTTP, but a CA"):
        http_target("http://localhost:1", {}, cacert=str(ca.certificate))
    with pytest.raises(UserError, match="no such file"):
        http_target("https://localhost:1", {}, cacert=str(tmp_path / "missing.pem"))
    with pytest.raises(UserError, match="port must be a number"):
        http_target("https://localhost:x", {})
