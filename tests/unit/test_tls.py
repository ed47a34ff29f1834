"""TLS contexts for the gateways and their clients, handshaking in memory (ssl.MemoryBIO): server
and client contexts, client certificates required and refused when missing, clear errors for bad
files and for plain text on a TLS port; and the control gateway's self-signed pair
(`sup secret generate-tls`): Habitat's names, SANs and key format."""

from __future__ import annotations

import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID

from pysup.crypto.certgen import (
    TlsFileError,
    TlsKind,
    default_ctl_keys_cache,
    generate_ctl_tls,
    latest_ctl_file,
    resolve_ctl_path,
)
from pysup.crypto.tls import (
    ServerTlsFiles,
    TlsConfigError,
    client_context,
    explain_tls_error,
    looks_like_tls,
    server_context,
)
from pysup.testing.certs import HandshakeFailed, Issued, TestCA, memory_handshake

T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, Issued, Issued, TestCA, Issued]:
    d = tmp_path_factory.mktemp("pki")
    ca = TestCA(d / "ca")
    other_ca = TestCA(d / "other", name="other CA")
    return (
        ca,
        ca.issue("server", ("localhost", "127.0.0.1")),
        ca.issue("client", client=True),
        other_ca,
        other_ca.issue("intruder", client=True),
    )


def serial_seen_by(client: ssl.SSLObject) -> int:
    peer = client.getpeercert()
    assert peer
    return int(str(peer["serialNumber"]), 16)


def test_server_and_client_contexts_handshake(
    pki: tuple[TestCA, Issued, Issued, TestCA, Issued],
) -> None:
    ca, server, *_ = pki
    _, c = memory_handshake(
        server_context(ServerTlsFiles(server.certificate, server.key)),
        client_context(ca.certificate),
    )
    assert serial_seen_by(c) == server.serial
    assert c.version() in ("TLSv1.2", "TLSv1.3")


def test_client_certificate_required_accepted_and_refused_when_missing(
    pki: tuple[TestCA, Issued, Issued, TestCA, Issued],
) -> None:
    ca, server, client, _, intruder = pki
    sctx = server_context(ServerTlsFiles(server.certificate, server.key, ca.certificate))
    assert sctx.verify_mode == ssl.CERT_REQUIRED
    s, _ = memory_handshake(sctx, client_context(ca.certificate, client.certificate, client.key))
    assert s.getpeercert()["subject"] == ((("commonName", "client"),),)  # type: ignore[index]
    with pytest.raises(HandshakeFailed) as missing:
        memory_handshake(sctx, client_context(ca.certificate))
    assert missing.value.side == "server"
    assert "presented no certificate" in explain_tls_error(missing.value.error, "c", "server")
    with pytest.raises(HandshakeFailed) as untrusted:
        memory_handshake(sctx, client_context(ca.certificate, intruder.certificate, intruder.key))
    assert untrusted.value.side == "server"
    assert "do not trust" in explain_tls_error(untrusted.value.error, "c", "server")


def test_without_client_ca_no_client_certificate_is_asked(
    pki: tuple[TestCA, Issued, Issued, TestCA, Issued],
) -> None:
    ca, server, *_ = pki
    sctx = server_context(ServerTlsFiles(server.certificate, server.key))
    assert sctx.verify_mode == ssl.CERT_NONE
    s, _ = memory_handshake(sctx, client_context(ca.certificate))
    assert s.getpeercert() is None


def test_client_refuses_untrusted_server_and_wrong_name(
    pki: tuple[TestCA, Issued, Issued, TestCA, Issued],
) -> None:
    ca, server, _, other_ca, _ = pki
    sctx = server_context(ServerTlsFiles(server.certificate, server.key))
    with pytest.raises(HandshakeFailed) as untrusted:
        memory_handshake(sctx, client_context(other_ca.certificate))
    assert untrusted.value.side == "client"
    assert "not trusted" in explain_tls_error(untrusted.value.error, "sup:9632", "client")
    with pytest.raises(HandshakeFailed, match="Hostname mismatch"):
        memory_handshake(sctx, client_context(ca.certificate), server_hostname="db.example")
    memory_handshake(sctx, client_context(ca.certificate, check_hostname=False), "db.example")


def test_plain_text_on_tls_port_and_tls_to_plain_port_explained(
    pki: tuple[TestCA, Issued, Issued, TestCA, Issued],
) -> None:
    ca, server, *_ = pki
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server_context(ServerTlsFiles(server.certificate, server.key)).wrap_bio(
        s_in, s_out, server_side=True
    )
    s_in.write(b"GET /services HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ssl.SSLError) as on_server:
        s.do_handshake()
    assert explain_tls_error(on_server.value, "10.0.0.9", "server") == (
        "client 10.0.0.9 spoke plain text to the TLS port"
    )
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client_context(ca.certificate).wrap_bio(c_in, c_out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        c.do_handshake()
    assert looks_like_tls(c_out.read())  # what a plain server sees from a TLS client
    c_in.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(ssl.SSLError) as on_client:
        c.do_handshake()
    assert "does not speak TLS" in explain_tls_error(on_client.value, "127.0.0.1:9632", "client")


def test_looks_like_tls() -> None:
    assert looks_like_tls(b"\x16\x03\x01\x02\x00")
    assert not looks_like_tls(b"GET / HTTP/1.1")
    assert not looks_like_tls(b"\x16\x03")
    assert not looks_like_tls(b"\x00\x00\x00\x10")


def test_bad_files_refused_naming_file_and_problem(
    pki: tuple[TestCA, Issued, Issued, TestCA, Issued], tmp_path: Path
) -> None:
    ca, server, client, *_ = pki
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    encrypted = tmp_path / "enc.key.pem"
    encrypted.write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    garbage_cert = tmp_path / "garbage.crt.pem"
    garbage_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        (ServerTlsFiles(tmp_path / "nope.pem", server.key), "nope.pem: no such file"),
        (ServerTlsFiles(tmp_path, server.key), "is a directory"),
        (ServerTlsFiles(empty, server.key), "empty.pem: no PEM certificate"),
        (ServerTlsFiles(server.certificate, empty), "empty.pem: no PEM private key"),
        (ServerTlsFiles(server.certificate, encrypted), "encrypted with a passphrase"),
        (ServerTlsFiles(server.certificate, client.key), "does not belong to the certificate"),
        (ServerTlsFiles(garbage_cert, server.key), "garbage.crt.pem"),
        (ServerTlsFiles(server.certificate, server.key, empty), "client CA certificate"),
    ]
    for files, why in cases:
        with pytest.raises(TlsConfigError) as info:
            server_context(files)
        assert why in str(info.value), files
    with pytest.raises(TlsConfigError, match="needs its key"):
        client_context(ca.certificate, certificate=client.certificate)


# -- sup secret generate-tls ----------------------------------------------------------------------


def test_generate_ctl_tls_names_modes_and_contents(tmp_path: Path) -> None:
    out = generate_ctl_tls("sup.example", tmp_path / "ctl", T0)
    assert out.certificate.name == "ctl-gateway-20240301123045.crt.pem"
    assert out.key.name == "ctl-gateway-20240301123045.key.pem"
    assert stat.S_IMODE(out.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.certificate.stat().st_mode) == 0o644
    cert = x509.load_pem_x509_certificate(out.certificate.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "Habitat Supervisor Control Gateway"
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["sup.example", "localhost"]
    assert cert.issuer == cert.subject
    assert cert.not_valid_after_utc.year == 9999
    assert cert.not_valid_before_utc <= T0
    assert out.key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as hab reads
    key = load_pem_private_key(out.key.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_generated_pair_serves_and_authenticates_clients_like_habitat(tmp_path: Path) -> None:
    """Habitat's own mutual-TLS setup: the one self-signed pair is the server's certificate,
    the client CA and the client's certificate all at once."""
    out = generate_ctl_tls("sup.example", tmp_path, T0)
    sctx = server_context(ServerTlsFiles(out.certificate, out.key, out.certificate))
    cctx = client_context(out.certificate, out.certificate, out.key)
    memory_handshake(sctx, cctx, server_hostname="sup.example")
    memory_handshake(sctx, cctx, server_hostname="localhost")
    with pytest.raises(HandshakeFailed, match="mismatch"):
        memory_handshake(sctx, cctx, server_hostname="127.0.0.1")


def test_ip_subject_alternative_name(tmp_path: Path) -> None:
    out = generate_ctl_tls("127.0.0.1", tmp_path, T0)
    sctx = server_context(ServerTlsFiles(out.certificate, out.key))
    memory_handshake(sctx, client_context(out.certificate), server_hostname="127.0.0.1")


@pytest.mark.parametrize("name", ["", "a b", "-x.example", "x..example", "a/b", "x" * 64])
def test_invalid_subject_alternative_names_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(TlsFileError, match="invalid subject alternative name"):
        generate_ctl_tls(name, tmp_path, T0)


def test_same_second_refused_and_newest_pair_resolved(tmp_path: Path) -> None:
    first = generate_ctl_tls("a.example", tmp_path, T0)
    with pytest.raises(TlsFileError, match="already exists"):
        generate_ctl_tls("b.example", tmp_path, T0)
    second = generate_ctl_tls("b.example", tmp_path, T0 + timedelta(seconds=1))
    (tmp_path / "ctl-gateway-29990101000000.crt.pem.tmp").write_text("junk")
    assert latest_ctl_file(tmp_path, TlsKind.CERTIFICATE) == second.certificate
    assert resolve_ctl_path(tmp_path, TlsKind.KEY) == second.key
    assert resolve_ctl_path(first.key, TlsKind.KEY) == first.key  # a file is taken as given
    with pytest.raises(TlsFileError, match="generate-tls"):
        latest_ctl_file(tmp_path / "nothing-here", TlsKind.KEY)


def test_default_ctl_cache_is_under_the_key_cache() -> None:
    assert default_ctl_keys_cache({"HAB_CACHE_KEY_PATH": "/k"}) == Path("/k/ctl")
