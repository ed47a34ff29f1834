"""TLS for the two gateways, from settings and environment (the wiring of ``pysup.crypto.tls``).

Server side (``pysup run``):

- HTTP gateway: ``--certs``/``--key`` (``--ca-certs``: client certificates required), Habitat's
  flags. A :class:`CertWatcher` re-reads the files when they change, so a rotated certificate is
  served to new connections without a restart.
- Control gateway: ``--ctl-server-certificate``/``--ctl-server-key``
  (``--ctl-client-ca-certificate``); each may name a file, a directory (its newest
  ``ctl-gateway-<rev>`` file of the kind) or nothing (``<key cache>/ctl``), as Habitat's do.

Client side (``pysup svc``, ``config apply``, ...), Habitat's environment variables:
``HAB_CTL_SERVER_CA_CERTIFICATE`` (a file, or a directory as above; set: speak TLS and trust it),
``HAB_CTL_CLIENT_CERTIFICATE`` + ``HAB_CTL_CLIENT_KEY`` (present a client certificate) and
``HAB_CTL_SERVER_NAME_INDICATION`` (the name the server's certificate must carry; default: the
host connected to).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pysup.butterfly.keys import default_key_cache
from pysup.crypto.tls import ServerTlsFiles, TlsConfigError, client_context, server_context
from pysup.settings import Settings

if TYPE_CHECKING:
    from pysup.crypto.certgen import TlsKind
    from pysup.crypto.certwatch import CertWatcher

CTL_CA_ENV: Final = "HAB_CTL_SERVER_CA_CERTIFICATE"
CTL_CLIENT_CERT_ENV: Final = "HAB_CTL_CLIENT_CERTIFICATE"
CTL_CLIENT_KEY_ENV: Final = "HAB_CTL_CLIENT_KEY"
CTL_SNI_ENV: Final = "HAB_CTL_SERVER_NAME_INDICATION"


def _watch(files: ServerTlsFiles) -> CertWatcher:
    from pysup.crypto.certwatch import CertWatcher  # only with TLS configured (issue 18)

    return CertWatcher(lambda: server_context(files), files.paths)


def http_tls(settings: Settings) -> CertWatcher | None:
    """The HTTP gateway's watcher (None: plain HTTP). TlsConfigError names a bad file."""
    if settings.tls_certs is None or settings.tls_key is None:
        return None
    ca = Path(settings.tls_ca_certs) if settings.tls_ca_certs else None
    return _watch(ServerTlsFiles(Path(settings.tls_certs), Path(settings.tls_key), ca))


def ctl_tls_dir(settings: Settings, env: Mapping[str, str]) -> Path:
    """``<key cache>/ctl``, honouring ``--cache-key-path``."""
    cache = Path(settings.key_cache) if settings.key_cache else default_key_cache(env)
    return cache / "ctl"


def _ctl_path(given: str, kind: TlsKind, default_dir: Path) -> Path:
    from pysup.crypto.certgen import TlsFileError, latest_ctl_file, resolve_ctl_path

    try:
        if not given:  # the flag alone: the default directory, even when it does not exist
            return latest_ctl_file(default_dir, kind)
        return resolve_ctl_path(Path(given), kind)
    except TlsFileError as e:
        raise TlsConfigError(str(e)) from None


def ctl_tls(settings: Settings, env: Mapping[str, str]) -> CertWatcher | None:
    """The control gateway's watcher (None: plain TCP). TlsConfigError names a bad file."""
    cert, key = settings.ctl_server_certificate, settings.ctl_server_key
    if cert is None or key is None:
        return None
    from pysup.crypto.certgen import TlsKind

    where = ctl_tls_dir(settings, env)
    ca = settings.ctl_client_ca_certificate
    return _watch(
        ServerTlsFiles(
            _ctl_path(cert, TlsKind.CERTIFICATE, where),
            _ctl_path(key, TlsKind.KEY, where),
            None if ca is None else _ctl_path(ca, TlsKind.CERTIFICATE, where),
        )
    )


@dataclass(frozen=True)
class ClientTls:
    """How a control client speaks TLS: the context and the name the server must prove."""

    context: ssl.SSLContext
    server_name: str


def ctl_client_tls(env: Mapping[str, str], host: str) -> ClientTls | None:
    """TLS for a control client from Habitat's variables; None when the CA is not set."""
    ca = env.get(CTL_CA_ENV, "").strip()
    if not ca:
        return None
    cert = env.get(CTL_CLIENT_CERT_ENV, "").strip() or None
    key = env.get(CTL_CLIENT_KEY_ENV, "").strip() or None
    from pysup.crypto.certgen import TlsKind

    ca_path = _ctl_path(ca, TlsKind.CERTIFICATE, Path(ca))
    context = client_context(
        ca_path, Path(cert) if cert else None, Path(key) if key else None, check_hostname=True
    )
    return ClientTls(context, env.get(CTL_SNI_ENV, "").strip() or host)
