"""The control gateway's client: connect, prove the secret, send requests (asyncio).

Every failure is a :class:`CtlClientError` whose message is one line an operator can act on
("no supervisor listening on 127.0.0.1:9632 (is `pysup run` running?)"), so the CLI prints it and
exits non-zero without a traceback.
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType
from typing import Any, Final

from pysup.crypto.tls import explain_tls_error
from pysup.gateway.ctl_proto import (
    HEADER,
    Auth,
    CtlProtocolError,
    Request,
    check_response,
    decode_body,
    encode_frame,
    frame_length,
)
from pysup.gateway.tls_setup import ClientTls

CONNECT_TIMEOUT_S: Final = 5.0
"""How long to wait for the TCP connection and the auth reply."""
REQUEST_TIMEOUT_S: Final = 120.0
"""How long to wait for a reply (``svc load`` runs plan.sh and may take a while)."""


class CtlClientError(Exception):
    """A control request failed; the message is one line for the user."""


class CtlClient:
    """``async with CtlClient(host, port, secret) as c: await c.request(SvcStatus())``."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        tls: ClientTls | None = None,
    ) -> None:
        self.host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.port = port
        self._secret = secret
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.tls = tls

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def __aenter__(self) -> CtlClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and authenticate."""
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.tls.context if self.tls else None,
                    server_hostname=self.tls.server_name if self.tls else None,
                )
        except ssl.SSLError as e:
            raise CtlClientError(explain_tls_error(e, self.where, "client")) from None
        except ConnectionRefusedError:
            raise CtlClientError(
                f"no supervisor listening on {self.where} (is `pysup run` running?)"
            ) from None
        except TimeoutError:
            raise CtlClientError(
                f"no answer from {self.where} within {self.connect_timeout_s:g}s"
            ) from None
        except OSError as e:
            raise CtlClientError(f"cannot connect to {self.where}: {e.strerror or e}") from None
        try:
            await self._exchange(Auth(self._secret), self.connect_timeout_s)
        except CtlClientError as e:
            await self.close()
            raise CtlClientError(f"{self.where} refused us: {e}") from None

    async def request(self, req: Request) -> dict[str, Any]:
        """Send one request; the response's fields, or CtlClientError with the server's error."""
        if self._writer is None:
            await self.connect()
        return await self._exchange(req, self.request_timeout_s)

    async def _exchange(self, req: Request, timeout: float) -> dict[str, Any]:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        try:
            frame = encode_frame(req.to_wire())
        except CtlProtocolError as e:
            raise CtlClientError(str(e)) from None
        try:
            async with asyncio.timeout(timeout):
                writer.write(frame)
                await writer.drain()
                header = await reader.readexactly(HEADER.size)
                if self.tls is None and _is_tls_record(header):
                    raise CtlClientError(
                        f"{self.where} speaks TLS: set HAB_CTL_SERVER_CA_CERTIFICATE to its "
                        "certificate (or CA) to talk to it"
                    )
                body = await reader.readexactly(frame_length(header))
            return check_response(decode_body(body))
        except CtlProtocolError as e:
            raise CtlClientError(str(e)) from None
        except ssl.SSLError as e:
            raise CtlClientError(explain_tls_error(e, self.where, "client")) from None
        except TimeoutError:
            raise CtlClientError(f"{self.where} did not answer within {timeout:g}s") from None
        except asyncio.IncompleteReadError:
            hint = "" if self.tls else " (if it speaks TLS, set HAB_CTL_SERVER_CA_CERTIFICATE)"
            raise CtlClientError(f"{self.where} closed the connection{hint}") from None
        except OSError as e:
            raise CtlClientError(f"connection to {self.where} failed: {e.strerror or e}") from None

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass


def _is_tls_record(header: bytes) -> bool:
    """A TLS record header (an alert 0x15 or a handshake 0x16, version 3.x) where a frame
    header was expected: a TLS server answering our plain text."""
    return len(header) >= 2 and header[0] in (0x15, 0x16) and header[1] == 0x03


async def send(
    host: str, port: int, secret: str, req: Request, tls: ClientTls | None = None
) -> dict[str, Any]:
    """Connect, authenticate, send one request, close."""
    async with CtlClient(host, port, secret, tls=tls) as client:
        return await client.request(req)
