"""A service's config inputs: the four layers and the gossiped files (no asyncio, small file I/O).

``ConfigSources`` holds what Habitat layers (default.toml < ``HAB_<PKG>`` < user.toml < gossip) and
the files uploaded to the group. Each ``offer_*`` takes news only when it is for our group and
newer (higher incarnation) than what we have; problems come back as an error message (the
caller logs and records it once) and leave the previous value in place, so a typo in user.toml
or a bad ``config apply`` never resets a running service.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pysup.census import Census, GossipProblem
from pysup.service.cfg import (
    ConfigError,
    env_var_name,
    layer_config,
    parse_toml,
)
from pysup.service.svcdir import valid_file_name


class ConfigSources:
    """Config layers and pending gossiped files of one service group."""

    def __init__(
        self,
        *,
        service_group: str,
        pkg_name: str,
        default: Mapping[str, Any],
        env: Mapping[str, str],
        user_toml: Path,
    ) -> None:
        self.service_group = service_group
        self.default = default
        self.env_var = env_var_name(pkg_name)
        self.env_text = env.get(self.env_var)
        self.user_toml = user_toml
        self.user_layer: dict[str, Any] = {}
        self.gossip_layer: dict[str, Any] = {}
        self.gossip_incarnation = 0
        self.file_incarnations: dict[str, int] = {}
        self.pending_files: dict[str, bytes] = {}
        self._reported: dict[str, int] = {}  # config/file name -> incarnation whose error we gave

    def merged(self) -> tuple[dict[str, Any], str | None]:
        """The effective config, and an error when ``HAB_<PKG>`` is unusable (then left out)."""
        try:
            return layer_config(
                self.default, self.env_text, self.user_layer, self.gossip_layer
            ), None
        except ConfigError as e:
            cfg = layer_config(self.default, None, self.user_layer, self.gossip_layer)
            return cfg, f"{self.env_var}: {e}"

    def read_user_toml(self) -> str | None:
        """Re-read user.toml (absent: empty layer); an error message when it cannot be used."""
        try:
            text = self.user_toml.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.user_layer = {}
            return None
        except (OSError, UnicodeDecodeError) as e:
            return f"{self.user_toml}: cannot read: {e}"
        try:
            self.user_layer = parse_toml(text, str(self.user_toml))
        except ConfigError as e:
            return str(e)
        return None

    def _offer_file(self, filename: str, incarnation: int, body: bytes) -> tuple[bool, str | None]:
        """A gossiped file (``file upload``), queued for ``files/``: (taken, error)."""
        if not valid_file_name(filename):
            return False, f"gossiped file name {filename!r} rejected"
        if incarnation <= self.file_incarnations.get(filename, 0):
            return False, None
        self.file_incarnations[filename] = incarnation
        self.pending_files[filename] = body
        return True, None

    def take_census(self, census: Census) -> tuple[bool, list[GossipProblem]]:
        """Take the group's gossiped config and files from a census snapshot (the only route by
        which they reach a service): (any news, problems). Each problem is reported once, and
        only while it is newer than what we run."""
        news = False
        errors: list[GossipProblem] = []
        group = self.service_group
        config = census.service_config(group)
        if config is not None and config.incarnation > self.gossip_incarnation:
            self.gossip_layer = dict(config.value)
            self.gossip_incarnation = config.incarnation
            news = True
        for f in census.service_files(group).values():
            taken, error = self._offer_file(f.filename, f.incarnation, f.body)
            news = news or taken
            if error is not None and self._first_report(f.filename, f.incarnation):
                errors.append(GossipProblem(f.filename, f.incarnation, error))
        for p in census.gossip_problems(group):
            taken_inc = (
                self.gossip_incarnation
                if p.item == "config"
                else self.file_incarnations.get(p.item, 0)
            )
            if p.incarnation > taken_inc and self._first_report(p.item, p.incarnation):
                errors.append(p)
        return news, errors

    def _first_report(self, item: str, incarnation: int) -> bool:
        if self._reported.get(item) == incarnation:
            return False
        self._reported[item] = incarnation
        return True

    def take_pending_files(self) -> dict[str, bytes]:
        pending, self.pending_files = self.pending_files, {}
        return pending
