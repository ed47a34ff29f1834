"""``ssl.SSLContext`` builders for the gateways and their clients, with errors a person can act on.

Server side (HTTP gateway ``--key``/``--certs``/``--ca-certs``; control gateway
``--ctl-server-key``/``--ctl-server-certificate``/``--ctl-client-ca-certificate``): a certificate
chain and its key; with a client CA, clients must present a certificate it signed (Habitat's
``--ca-certs`` and ``--ctl-client-ca-certificate`` do the same). Client side: trust one CA file
(for the control gateway, the server's self-signed certificate), optionally present a client
certificate. TLS 1.2 is the minimum; Python's defaults pick the ciphers.

The file checks run before OpenSSL sees the files so that a missing, empty, wrong or mismatched
file gives one line naming it, and an encrypted key never makes OpenSSL prompt on the terminal.
:func:`explain_tls_error` turns handshake failures (plain text on a TLS port, untrusted
certificate, missing client certificate) into one line for logs and the CLI.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

MIN_TLS_VERSION: Final = ssl.TLSVersion.TLSv1_2
"""TLS 1.0/1.1 are deprecated (RFC 8996); every client of ours and Habitat's speaks 1.2+."""
MAX_PEM_BYTES: Final = 1024 * 1024
"""Bytes. Larger "PEM files" are refused before parsing: a CA bundle is ~200 KiB."""


class TlsConfigError(Exception):
    """TLS files that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ServerTlsFiles:
    """A gateway's TLS files. ``client_ca`` set means client certificates are required."""

    certificate: Path
    key: Path
    client_ca: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file the context is built from (what a watcher must stat)."""
        return (self.certificate, self.key) + ((self.client_ca,) if self.client_ca else ())


def _read_pem(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise TlsConfigError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise TlsConfigError(f"{what} {path}: is a directory, not a file") from None
    except OSError as e:
        raise TlsConfigError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_PEM_BYTES:
        raise TlsConfigError(f"{what} {path}: over {MAX_PEM_BYTES} bytes, not a PEM file")
    return data.decode("latin-1")


def _check_certificates(path: Path, what: str) -> None:
    if "-----BEGIN CERTIFICATE-----" not in _read_pem(path, what):
        raise TlsConfigError(f"{what} {path}: no PEM certificate (-----BEGIN CERTIFICATE-----)")


def _check_key(path: Path) -> None:
    text = _read_pem(path, "private key")
    if "ENCRYPTED PRIVATE KEY" in text or "Proc-Type: 4,ENCRYPTED" in text:
        raise TlsConfigError(f"private key {path}: encrypted with a passphrase; not supported")
    if "PRIVATE KEY-----" not in text:
        raise TlsConfigError(
            f"private key {path}: no PEM private key (-----BEGIN PRIVATE KEY-----)"
        )


def _no_passphrase() -> bytes:
    raise TlsConfigError("private key needs a passphrase")


def _load_chain(ctx: ssl.SSLContext, certificate: Path, key: Path) -> None:
    _check_certificates(certificate, "certificate")
    _check_key(key)
    try:
        ctx.load_cert_chain(str(certificate), str(key), password=_no_passphrase)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError(
                f"private key {key} does not belong to the certificate {certificate}"
            ) from None
        raise TlsConfigError(
            f"cannot load certificate {certificate} with key {key}: {e.reason or e}"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: Path, what: str) -> None:
    _check_certificates(ca, what)
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as e:
        raise TlsConfigError(f"{what} {ca}: cannot load: {e.reason or e}") from None


def server_context(files: ServerTlsFiles) -> ssl.SSLContext:
    """A server context from ``files``; TlsConfigError names the file that is wrong."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS_VERSION
    _load_chain(ctx, files.certificate, files.key)
    if files.client_ca is not None:
        _load_ca(ctx, files.client_ca, "client CA certificate")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    ca: Path | None,
    certificate: Path | None = None,
    key: Path | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context trusting ``ca`` (None: the system's trust store), presenting
    ``certificate``/``key`` when given. ``check_hostname`` False still verifies the chain."""
    if (certificate is None) != (key is None):
        raise TlsConfigError("a client certificate needs its key, and a key its certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MIN_TLS_VERSION
    if ca is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_ca(ctx, ca, "server CA certificate")
    ctx.check_hostname = check_hostname
    if certificate is not None and key is not None:
        _load_chain(ctx, certificate, key)
    return ctx


TLS_HANDSHAKE_RECORD: Final = 0x16


def looks_like_tls(first_bytes: bytes) -> bool:
    """Whether a connection's first bytes are a TLS handshake record (``16 03 0x``), so a plain
    server can tell a TLS client apart and answer with one clear line instead of garbage."""
    return (
        len(first_bytes) >= 3
        and first_bytes[0] == TLS_HANDSHAKE_RECORD
        and first_bytes[1] == 0x03
        and first_bytes[2] <= 0x04
    )


_NOT_TLS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)
_NEEDS_CLIENT_CERT: Final = frozenset(
    {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}
)
_CLIENT_CERT_REFUSED: Final = frozenset(
    {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"}
)


def explain_tls_error(error: ssl.SSLError, peer: str, side: Literal["client", "server"]) -> str:
    """One line for a failed handshake, from the ``side`` that saw ``error`` about ``peer``."""
    reason = error.reason or ""
    if isinstance(error, ssl.SSLCertVerificationError):
        if side == "server":
            return f"client {peer} presented a certificate we do not trust: {error.verify_message}"
        return f"the certificate of {peer} is not trusted: {error.verify_message}"
    if side == "server":
        if reason == "HTTP_REQUEST" or reason in _NOT_TLS:
            return f"client {peer} spoke plain text to the TLS port"
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return f"client {peer} presented no certificate; one is required"
        return f"TLS handshake with client {peer} failed: {reason or error}"
    if reason in _NOT_TLS:
        return f"{peer} does not speak TLS (is TLS enabled on that gateway?)"
    if reason in _NEEDS_CLIENT_CERT:
        return f"{peer} requires a client certificate (none was presented, or it was refused)"
    if reason in _CLIENT_CERT_REFUSED:
        return f"{peer} refused our client certificate"
    return f"TLS handshake with {peer} failed: {reason or error}"
