"""The control gateway's self-signed certificate and key: ``sup secret generate-tls``.

Habitat (``components/core/src/tls/ctl_gateway.rs``, ``hab sup secret generate-tls``):

- files ``ctl-gateway-<YYYYMMDDhhmmss>.crt.pem`` and ``ctl-gateway-<YYYYMMDDhhmmss>.key.pem``
  in the ctl key cache, ``/hab/cache/keys/ctl`` by default (the ``PATH`` argument overrides it);
- an ECDSA P-256 key in PKCS#8 PEM (Habitat's readers accept only PKCS#8), a self-signed
  certificate whose subject is ``O=Habitat Supervisor Control Gateway`` and whose subject
  alternative names are the given name and ``localhost``;
- ``--ctl-server-certificate`` / ``--ctl-server-key`` / ``--ctl-client-ca-certificate`` given a
  directory take the newest file of the kind there (:func:`resolve_ctl_path`).

Our default directory is ``<key cache>/ctl`` (``default_key_cache``), which is
``/hab/cache/keys/ctl`` on a Habitat host. We also accept an IP address as the name (an IP
SAN), which Habitat refuses; clients that dial ``127.0.0.1`` then need no name override.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from pysup.butterfly.keys import default_key_cache
from pysup.crypto.keyfiles import KeyFileError, ensure_cache_dir, revision_at, write_key_file

CTL_NAME_PREFIX: Final = "ctl-gateway"
CTL_ORGANIZATION: Final = "Habitat Supervisor Control Gateway"
CERT_FILE_MODE: Final = 0o644
"""The certificate is public: clients copy it to trust the gateway."""
KEY_FILE_MODE: Final = 0o600
"""Owner only. (Habitat leaves the key to the umask; a private key should never be readable.)"""
NOT_AFTER: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""RFC 5280 4.1.2.5's "no well-defined expiration date". Habitat's certificates do not expire in
practice either (year 4096): rotation is by the operator, and an expiry nobody planned for would
lock every client out of the control gateway."""
BACKDATE: Final = timedelta(hours=1)
"""``notBefore`` is this far before now, so a client whose clock is a little behind accepts it."""

_LABEL_RE: Final = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class TlsFileError(Exception):
    """TLS files could not be made, found or written. The message names the path."""


class TlsKind(StrEnum):
    """A control gateway TLS file kind, by its file suffix."""

    CERTIFICATE = ".crt.pem"
    KEY = ".key.pem"


@dataclass(frozen=True)
class GeneratedTls:
    """Where ``generate_ctl_tls`` wrote the pair."""

    certificate: Path
    key: Path


def default_ctl_keys_cache(env: Mapping[str, str] | None = None) -> Path:
    """``<key cache>/ctl``: Habitat's ``/hab/cache/keys/ctl`` on a Habitat host."""
    return default_key_cache(env) / "ctl"


def check_subject_alternative_name(name: str) -> str:
    """A DNS name (labels of letters, digits, ``_``, ``-``) or an IP address."""
    text = name.strip().rstrip(".")
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise TlsFileError(f"invalid subject alternative name {name!r} (want a DNS name or IP)")
    return text


def make_self_signed(name: str, now: datetime) -> tuple[bytes, bytes]:
    """A new key and self-signed certificate for ``name`` (plus ``localhost``), as PEM bytes
    ``(certificate, pkcs8 key)``."""
    # Imported here: every `pysup run` loads this module (resolving ctl paths), but only
    # `sup secret generate-tls` makes certificates, and cryptography's X.509 costs ~35 ms and
    # a few MB at start-up (issue 18).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    name = check_subject_alternative_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, CTL_ORGANIZATION)])
    sans: list[x509.GeneralName] = []
    for n in dict.fromkeys([name, "localhost"]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    utc_now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utc_now - BACKDATE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def generate_ctl_tls(name: str, directory: Path, now: datetime) -> GeneratedTls:
    """``sup secret generate-tls``: write ``ctl-gateway-<rev>.{crt,key}.pem`` to ``directory``.

    A pair with the same revision (made within the same second) is refused, not overwritten.
    """
    cert_pem, key_pem = make_self_signed(name, now)
    rev = revision_at(now)
    directory = Path(directory)
    cert_path = directory / f"{CTL_NAME_PREFIX}-{rev}{TlsKind.CERTIFICATE}"
    key_path = directory / f"{CTL_NAME_PREFIX}-{rev}{TlsKind.KEY}"
    for path in (cert_path, key_path):
        if path.exists():
            raise TlsFileError(f"{path} already exists; wait a second and generate again")
    try:
        ensure_cache_dir(directory)
        write_key_file(key_path, key_pem.decode("ascii"), KEY_FILE_MODE)
        write_key_file(cert_path, cert_pem.decode("ascii"), CERT_FILE_MODE)
    except KeyFileError as e:
        raise TlsFileError(str(e)) from None
    return GeneratedTls(certificate=cert_path, key=key_path)


def latest_ctl_file(directory: Path, kind: TlsKind) -> Path:
    """The newest ``ctl-gateway-<rev><kind>`` in ``directory``."""
    pattern = re.compile(re.escape(CTL_NAME_PREFIX) + r"-\d{14}" + re.escape(kind.value))
    try:
        found = [p for p in Path(directory).iterdir() if pattern.fullmatch(p.name) and p.is_file()]
    except FileNotFoundError:
        found = []
    except OSError as e:
        raise TlsFileError(f"cannot read {directory}: {e.strerror or e}") from None
    if not found:
        raise TlsFileError(
            f"no {CTL_NAME_PREFIX}-<revision>{kind.value} in {directory} "
            "(make one with `pysup sup secret generate-tls`)"
        )
    return max(found, key=lambda p: p.name)


def resolve_ctl_path(path: Path, kind: TlsKind) -> Path:
    """Habitat's rule for the ctl TLS flags: a directory means its newest file of ``kind``."""
    path = Path(path)
    return latest_ctl_file(path, kind) if path.is_dir() else path
