"""Certificates for tests: a throwaway CA that issues server and client certificates, and an
in-memory TLS handshake (``ssl.MemoryBIO``) so contexts can be tested without sockets.

Shipped with the package (like the simulated network) so the gateway tests of later work and
users' own tests can make TLS material without ``openssl``.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=2)
"""Test certificates live two days (from an hour ago): long enough for any test run."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM, and where they were written."""

    certificate: Path
    key: Path
    serial: int


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TestCA:
    """A CA writing PEM files into ``directory``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "pysup test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name(name)
        now = datetime.now(UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        slug = name.replace(" ", "-")
        self.certificate = self.directory / f"{slug}.crt.pem"
        self.certificate.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, stem: str, names: tuple[str, ...] = ("localhost",), client: bool = False
    ) -> Issued:
        """Write ``<stem>.crt.pem``/``<stem>.key.pem``: a server certificate for ``names`` (DNS
        names or IPs), or a client certificate when ``client``."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        now = datetime.now(UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(stem))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_path = self.directory / f"{stem}.crt.pem"
        key_path = self.directory / f"{stem}.key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        return Issued(cert_path, key_path, serial)


class HandshakeFailed(Exception):
    """The in-memory handshake failed; ``side`` saw ``error`` first."""

    def __init__(self, side: str, error: ssl.SSLError) -> None:
        super().__init__(f"{side}: {error}")
        self.side = side
        self.error = error


def memory_handshake(
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    server_hostname: str | None = "localhost",
    max_rounds: int = 20,
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a full TLS handshake between two contexts over memory BIOs (no sockets, no time).

    Returns ``(server_side, client_side)`` SSL objects; raises HandshakeFailed with the side whose
    ``do_handshake`` raised a non-retry error. With TLS 1.3 a server refusing the client's
    certificate is only seen by the client when it next reads, so this also makes the client
    read once after its handshake completes.
    """
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    done = {"server": False, "client": False}
    for _ in range(max_rounds):
        for side, obj, src, dst in (("client", c, c_out, s_in), ("server", s, s_out, c_in)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except ssl.SSLError as e:
                    raise HandshakeFailed(side, e) from e
            if src.pending:
                dst.write(src.read())
        if all(done.values()) and not s_out.pending and not c_out.pending:
            break
    if not all(done.values()):
        raise AssertionError(f"handshake did not finish in {max_rounds} rounds: {done}")
    _client_reads_once(c, c_in, s, s_out)
    return s, c


def _client_reads_once(
    c: ssl.SSLObject, c_in: ssl.MemoryBIO, s: ssl.SSLObject, s_out: ssl.MemoryBIO
) -> None:
    """Let the server's post-handshake messages (TLS 1.3 tickets, or its alert) reach the
    client, so a late refusal surfaces as HandshakeFailed("client", ...)."""
    try:
        s.write(b"\x00")
    except ssl.SSLError as e:
        raise HandshakeFailed("server", e) from e
    if s_out.pending:
        c_in.write(s_out.read())
    try:
        c.read(1)
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError as e:
        raise HandshakeFailed("client", e) from e
