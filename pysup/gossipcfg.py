"""The configuration text a service group receives through gossip, parsed once (pure).

`config apply` puts TOML in a `ServiceConfigRumor`; the codec checks it on arrival, the control
gateway before it publishes one, and the census gives services the parsed table. All of them
parse here. `GossipConfigs` keeps each rumor's parse, so a census rebuilt for a member's
heartbeat does not parse every group's TOML again. Imported by the ring's codec, the census and
the service layer alike; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import structlog

from pysup.butterfly.messages import ServiceConfigRumor

log = structlog.get_logger(__name__)

MAX_GOSSIP_CONFIG: Final = 64 * 1024
"""Largest config (bytes of TOML) accepted from gossip, as ``hab config apply`` enforces."""


class ConfigError(Exception):
    """A config layer could not be parsed or is not acceptable; the message says which and why."""


def parse_toml(text: str, source: str = "config") -> dict[str, Any]:
    """Parse TOML text; ``ConfigError`` names `source` and tomllib's reason (line and column)."""
    import tomllib  # on the first gossiped config, not at start (issue 18)

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None


def parse_gossip_config(data: bytes) -> dict[str, Any]:
    """Parse a config applied through gossip: UTF-8 TOML of at most ``MAX_GOSSIP_CONFIG`` bytes."""
    if len(data) > MAX_GOSSIP_CONFIG:
        raise ConfigError(
            f"gossip config is {len(data)} bytes, over the {MAX_GOSSIP_CONFIG} byte limit"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"gossip config is not UTF-8: {exc}") from None
    return parse_toml(text, "gossip config")


ParsedConfig = Mapping[str, Any] | str
"""A config rumor's table (read-only), or why it cannot be used (a message for the service)."""


class GossipConfigs:
    """Each service group's config rumor, parsed once: the cache keeps the last rumor per group
    and its parse, and parses again only for a different rumor (a new incarnation, or the same
    incarnation with other bytes: the store's tie-break). A problem is logged once, here."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[ServiceConfigRumor, bytes, ParsedConfig]] = {}

    def parse(self, rumor: ServiceConfigRumor, text: bytes) -> ParsedConfig:
        """`text`: the rumor's config in the clear (opened, when the rumor is encrypted)."""
        cached = self._parsed.get(rumor.service_group)
        if cached is not None and cached[0] == rumor and cached[1] == text:
            return cached[2]
        result = _parse(rumor, text)
        self._parsed[rumor.service_group] = (rumor, text, result)
        return result

    def keep_only(self, groups: set[str]) -> None:
        """Forget the groups whose config rumor is gone (the cache stays as big as the store)."""
        for group in self._parsed.keys() - groups:
            del self._parsed[group]


def _parse(rumor: ServiceConfigRumor, text: bytes) -> ParsedConfig:
    group, inc = rumor.service_group, rumor.incarnation
    try:
        return MappingProxyType(parse_gossip_config(text))
    except ConfigError as e:
        log.warning("census.config_invalid", service_group=group, incarnation=inc, error=str(e))
        return f"gossip config {inc}: {e}"
