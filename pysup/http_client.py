"""The CLI's client of a supervisor's HTTP gateway (``pysup census``): one GET of JSON, over HTTP or
HTTPS, every failure one line.

HTTPS when the address says ``https://`` or a CA is given: ``--cacert FILE`` or
``PYSUP_HTTP_CA_CERTIFICATE`` names the CA (or the self-signed certificate) the gateway's
certificate must chain to; with ``https://`` and no CA the system's trust store is used. The
certificate must name the host connected to (``--http https://localhost:9631`` for a certificate
made for localhost). ``--cert``/``--key`` or ``PYSUP_TLS_CLIENT_CERT``/``PYSUP_TLS_CLIENT_KEY``
(the names ``hooks/healthcheck`` and ``hooks/pre-stop`` read, so one environment serves both)
present a client certificate to a gateway started with ``--ca-certs``. ``HAB_CTL_*`` stays the
control gateway's: the two gateways usually have different certificates.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pysup.crypto.tls import TlsConfigError, client_context, explain_tls_error
from pysup.ctl_target import UserError, parse_addr

HTTP_CA_ENV: Final = "PYSUP_HTTP_CA_CERTIFICATE"
HTTP_CLIENT_CERT_ENV: Final = "PYSUP_TLS_CLIENT_CERT"
HTTP_CLIENT_KEY_ENV: Final = "PYSUP_TLS_CLIENT_KEY"
TOKEN_ENV: Final = "HAB_SUP_GATEWAY_AUTH_TOKEN"
DEFAULT_HTTP_PORT: Final = 9631
HTTP_TIMEOUT_S: Final = 10.0
"""Seconds for the whole request; the gateway answers /census in milliseconds, so this only
bounds a hung or unreachable host."""


@dataclass(frozen=True)
class HttpTarget:
    """Where and how to ask: ``tls`` None means plain HTTP."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    token: str | None = None
    client_cert: bool = False
    """Whether ``tls`` presents a client certificate (for the hint when the gateway hangs up)."""

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.where}"


def _flag_or_env(flag: str | None, env: Mapping[str, str], name: str) -> Path | None:
    value = flag if flag else env.get(name, "").strip()
    return Path(value) if value else None


def http_target(
    addr: str,
    env: Mapping[str, str],
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
) -> HttpTarget:
    """The target of ``addr`` (``[http[s]://]HOST[:PORT]``), TLS from flags or environment."""
    scheme, sep, rest = addr.strip().partition("://")
    if not sep:
        scheme, rest = "", addr
    if scheme not in ("", "http", "https"):
        raise UserError(f"--http {addr!r}: only http:// and https:// are spoken")
    host, port = parse_addr(rest.rstrip("/"), DEFAULT_HTTP_PORT, "--http")
    ca = _flag_or_env(cacert, env, HTTP_CA_ENV)
    if scheme == "http" and ca is not None:
        raise UserError(f"--http {addr!r} is plain HTTP, but a CA certificate is given for HTTPS")
    token = env.get(TOKEN_ENV) or None
    if scheme != "https" and ca is None:
        return HttpTarget(host, port, None, token)
    client_cert = _flag_or_env(cert, env, HTTP_CLIENT_CERT_ENV)
    client_key = _flag_or_env(key, env, HTTP_CLIENT_KEY_ENV)
    try:
        context = client_context(ca, client_cert, client_key, check_hostname=True)
    except TlsConfigError as e:
        raise UserError(f"HTTP gateway TLS: {e}") from None
    return HttpTarget(host, port, context, token, client_cert is not None)


def _unreachable(target: HttpTarget, error: BaseException) -> UserError:
    where = target.where
    if isinstance(error, ssl.SSLError):
        return UserError(f"the HTTP gateway: {explain_tls_error(error, where, 'client')}")
    if isinstance(error, ConnectionRefusedError):
        return UserError(
            f"no supervisor HTTP gateway listening on {where} (is `pysup run` running?)"
        )
    if isinstance(error, ConnectionResetError | http.client.HTTPException):
        if target.tls is None:  # a TLS gateway drops a plain request without an HTTP answer
            return UserError(
                f"the HTTP gateway at {where} closed the connection (if it serves HTTPS, use "
                f"--http https://{where} and --cacert or ${HTTP_CA_ENV})"
            )
        if not target.client_cert:  # TLS 1.3: the refusal comes after the handshake
            return UserError(
                f"the HTTP gateway at {where} closed the connection: it may require a client "
                f"certificate (--cert/--key or ${HTTP_CLIENT_CERT_ENV}/${HTTP_CLIENT_KEY_ENV})"
            )
    return UserError(f"cannot reach the HTTP gateway at {where}: {error}")


def get_json(target: HttpTarget, path: str) -> dict[str, Any]:
    """The JSON object at ``path``; UserError with one line on any failure."""
    req = urllib.request.Request(target.base_url + path)
    if target.token:
        req.add_header("Authorization", f"Bearer {target.token}")
    handlers = [urllib.request.HTTPSHandler(context=target.tls)] if target.tls else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=HTTP_TIMEOUT_S) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        raise UserError(
            f"the HTTP gateway at {target.where} answered {e.code} {e.reason}"
        ) from None
    except urllib.error.URLError as e:
        reason = e.reason if isinstance(e.reason, BaseException) else e
        raise _unreachable(target, reason) from None
    except (OSError, http.client.HTTPException) as e:
        raise _unreachable(target, e) from None
    try:
        value = json.loads(data)
    except ValueError:
        raise UserError(f"the HTTP gateway at {target.where} did not answer JSON") from None
    if not isinstance(value, dict):
        raise UserError(f"the HTTP gateway at {target.where} answered an unexpected shape")
    return value
