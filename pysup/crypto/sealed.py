"""Encrypted config and file rumors (``config apply --user``, ``file upload --user``) end to end.

- :func:`check_sealed`: the control gateway's check before it gossips an encrypted payload: well
  formed ``BOX-1``, at most :data:`~pysup.crypto.message.MAX_ENCRYPTED_BYTES`, addressed to the
  key of the rumor's service group. It cannot decrypt (the gateway's member may lack the key).
- :class:`RumorOpener`: a member's side. The rumor store keeps and forwards encrypted rumors
  unchanged (so they spread to every member whatever its keys); consumers (the census, the
  services) ask the opener for the plain payload. A member without the service key gets None: its
  service is not changed, the reason is logged once per rumor version (``sealed.unreadable``) and
  counted (``pysup_rejected_inputs{source="sealed",reason=no_service_key|...}``), and
  :meth:`RumorOpener.unreadable` lists them for the HTTP gateway.

Successes are remembered per rumor identity (one entry per config/file, replaced by a newer
version), so the key cache is read once per version, not once per census.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from pysup.butterfly.messages import Rumor, RumorId, ServiceConfigRumor, ServiceFileRumor

if TYPE_CHECKING:  # the box crypto loads with the first encrypted payload (issue 18: start-up)
    from pysup.crypto.keycache import KeyCache
    from pysup.crypto.message import BoxMessageError

log = structlog.get_logger(__name__)

METRIC_SOURCE: Final = "sealed"
"""``source`` label of ``pysup_rejected_inputs`` for encrypted rumors this member cannot open."""

Sealed = ServiceConfigRumor | ServiceFileRumor


def check_sealed(data: bytes, service_group: str) -> str | None:
    """Why ``data`` cannot be gossiped as an encrypted payload for ``service_group`` (None: it
    can). Size first, so a huge payload is refused before parsing."""
    from pysup.crypto.message import (
        MAX_ENCRYPTED_BYTES,
        BoxMessageError,
        SignedBox,
        check_addressed_to,
    )

    if len(data) > MAX_ENCRYPTED_BYTES:
        return f"encrypted payload is {len(data)} bytes, over the {MAX_ENCRYPTED_BYTES} limit"
    try:
        check_addressed_to(SignedBox.parse(data).decryptor, service_group)
    except BoxMessageError as e:
        return str(e)
    return None


def payload_of(rumor: Sealed) -> bytes:
    return rumor.config if isinstance(rumor, ServiceConfigRumor) else rumor.body


@dataclasses.dataclass(frozen=True)
class _Seen:
    incarnation: int
    digest: bytes
    plain: bytes | None
    reason: str | None


class RumorOpener:
    """Opens encrypted rumors with the service keys in ``key_cache``; ``reject(source, reason)``
    counts what cannot be opened (``Metrics.reject``)."""

    def __init__(self, key_cache: Path, reject: Callable[[str, str], None]) -> None:
        self.key_cache = key_cache
        self._cache: KeyCache | None = None
        self._reject = reject
        self._seen: dict[RumorId, _Seen] = {}

    @property
    def cache(self) -> KeyCache:
        """The service keys, opened at the first encrypted rumor."""
        if self._cache is None:
            from pysup.crypto.keycache import KeyCache

            self._cache = KeyCache(self.key_cache)
        return self._cache

    def plain(self, rumor: Sealed) -> bytes | None:
        """The rumor's payload in the clear (as is when not encrypted), or None when this member
        cannot open it (the reason is logged and counted once per rumor version)."""
        data = payload_of(rumor)
        if not rumor.encrypted:
            return data
        from pysup.crypto.message import BoxMessageError, decrypt

        digest = hashlib.sha256(data).digest()
        seen = self._seen.get(rumor.identity)
        if (
            seen
            and seen.plain is not None
            and (seen.incarnation, seen.digest)
            == (
                rumor.incarnation,
                digest,
            )
        ):
            return seen.plain
        try:
            plain: bytes | None = decrypt(data, self.cache, rumor.service_group).payload
            reason = None
        except BoxMessageError as e:
            plain, reason = None, e.reason
            same = seen and (seen.incarnation, seen.digest, seen.reason) == (
                rumor.incarnation,
                digest,
                reason,
            )
            if not same:
                self._report(rumor, e)
        self._seen[rumor.identity] = _Seen(rumor.incarnation, digest, plain, reason)
        return plain

    def opened(self, rumor: Rumor) -> Rumor | None:
        """``rumor`` for consumers: a config/file rumor decrypted (``encrypted`` False), None when
        it cannot be opened here; any other rumor unchanged."""
        if not isinstance(rumor, ServiceConfigRumor | ServiceFileRumor) or not rumor.encrypted:
            return rumor
        plain = self.plain(rumor)
        if plain is None:
            return None
        if isinstance(rumor, ServiceConfigRumor):
            return dataclasses.replace(rumor, config=plain, encrypted=False)
        return dataclasses.replace(rumor, body=plain, encrypted=False)

    def unreadable(self) -> dict[str, str]:
        """``"<service group>/<config|file name>@<version>"`` -> reason, for what this member
        holds and passes on but cannot open."""
        return {
            f"{rid[1]}/{rid[2]}@{seen.incarnation}": seen.reason
            for rid, seen in sorted(self._seen.items())
            if seen.reason is not None
        }

    def _report(self, rumor: Sealed, error: BoxMessageError) -> None:
        self._reject(METRIC_SOURCE, error.reason)
        what = "config" if isinstance(rumor, ServiceConfigRumor) else f"file {rumor.filename}"
        log.warning(
            "sealed.unreadable",
            service_group=rumor.service_group,
            what=what,
            incarnation=rumor.incarnation,
            reason=error.reason,
            error=str(error),
            effect="kept and passed on; this member's service is not changed",
        )
