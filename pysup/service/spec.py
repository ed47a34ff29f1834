"""A service spec: what the operator asked for when loading a service (``svc load`` flags).

Persisted as TOML (one file per service in the state dir's ``specs/``) with Habitat's spec keys
where Habitat has one (``group``, ``topology``, ``update_strategy``, ``binds`` as
``"name:svc.group"`` strings, ``binding_mode``, ``desired_state``, ``health_check_interval``)
plus pysup's ``plan_dir`` (plans run in place), ``org`` and ``shutdown_timeout``.
Every value is validated when a spec is built; ``SpecError`` says which field and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NamedTuple

from pysup.census import ServiceGroup, valid_group_name

DEFAULT_GROUP: Final = "default"
DEFAULT_HEALTH_CHECK_INTERVAL_S: Final = 30.0


class SpecError(ValueError):
    """A spec field is invalid; the message names the field (and the source, when read)."""


class Topology(StrEnum):
    STANDALONE = "standalone"
    LEADER = "leader"


class UpdateStrategy(StrEnum):
    NONE = "none"
    AT_ONCE = "at-once"
    ROLLING = "rolling"


class BindingMode(StrEnum):
    STRICT = "strict"
    RELAXED = "relaxed"


class DesiredState(StrEnum):
    UP = "Up"
    DOWN = "Down"


class Bind(NamedTuple):
    """``--bind name:svc.group[@org]``: bind `name` of the plan to a service group."""

    name: str
    service_group: str

    def __str__(self) -> str:
        return f"{self.name}:{self.service_group}"

    @classmethod
    def parse(cls, text: str) -> Bind:
        name, colon, sg = text.partition(":")
        if not colon or not name or not sg:
            raise SpecError(f"bind {text!r} is not of the form name:service.group[@org]")
        return cls.of(name, sg)

    @classmethod
    def of(cls, name: str, service_group: str) -> Bind:
        if not valid_group_name(name):
            raise SpecError(f"bind name {name!r} may hold only letters, digits, '_' and '-'")
        try:
            ServiceGroup.parse(service_group)
        except ValueError as e:
            raise SpecError(f"bind {name}: {e}") from None
        return cls(name, service_group)


def _enum(cls: type[StrEnum], key: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    for member in cls:
        if isinstance(value, str) and value.lower() == member.value.lower():
            return member
    allowed = "|".join(m.value for m in cls)
    raise SpecError(f"{key} must be one of {allowed}, got {value!r}")


def _seconds(key: str, value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise SpecError(f"{key} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class ServiceSpec:
    """A loaded service's desired configuration. Strings are accepted for the enum fields and
    ``"name:svc.group"`` strings for binds; they are normalised on construction."""

    plan_dir: Path
    """The plan directory (run in place)."""
    group: str = DEFAULT_GROUP
    """The service group name (``--group``)."""
    org: str | None = None
    """The organization part of ``svc.group@org``."""
    topology: Topology = Topology.STANDALONE
    strategy: UpdateStrategy = UpdateStrategy.NONE
    binds: tuple[Bind, ...] = field(default_factory=tuple)
    """(bind name, service group) pairs (``--bind``)."""
    binding_mode: BindingMode = BindingMode.STRICT
    """strict: hooks wait until every bound group exists and exports what the plan requires."""
    health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S
    """Seconds between health checks of a healthy service (Habitat's 30 s)."""
    shutdown_timeout_s: float | None = None
    """Seconds between the shutdown signal and KILL; None: the plan's (pkg_shutdown_timeout_sec)."""
    desired_state: DesiredState = DesiredState.UP

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "plan_dir", Path(self.plan_dir))
        if not isinstance(self.group, str) or not valid_group_name(self.group):
            raise SpecError(f"group {self.group!r} may hold only letters, digits, '_' and '-'")
        if self.org is not None and (
            not isinstance(self.org, str) or not valid_group_name(self.org)
        ):
            raise SpecError(f"org {self.org!r} may hold only letters, digits, '_' and '-'")
        set_(self, "topology", _enum(Topology, "topology", self.topology))
        set_(self, "strategy", _enum(UpdateStrategy, "update_strategy", self.strategy))
        set_(self, "binding_mode", _enum(BindingMode, "binding_mode", self.binding_mode))
        set_(self, "desired_state", _enum(DesiredState, "desired_state", self.desired_state))
        set_(self, "binds", _binds(self.binds))
        set_(
            self,
            "health_check_interval_s",
            _seconds("health_check_interval", self.health_check_interval_s, allow_zero=False),
        )
        if self.shutdown_timeout_s is not None:
            set_(
                self,
                "shutdown_timeout_s",
                _seconds("shutdown_timeout", self.shutdown_timeout_s, allow_zero=True),
            )

    def service_group(self, service: str) -> ServiceGroup:
        """The group of `service` (the plan's name) under this spec."""
        return ServiceGroup.of(service, self.group, self.org)

    def bind(self, name: str) -> Bind | None:
        for b in self.binds:
            if b.name == name:
                return b
        return None

    # --- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "plan_dir": str(self.plan_dir),
            "group": self.group,
            "topology": self.topology.value,
            "update_strategy": self.strategy.value,
            "binds": [str(b) for b in self.binds],
            "binding_mode": self.binding_mode.value,
            "health_check_interval": self.health_check_interval_s,
            "desired_state": self.desired_state.value,
        }
        if self.org is not None:
            out["org"] = self.org
        if self.shutdown_timeout_s is not None:
            out["shutdown_timeout"] = self.shutdown_timeout_s
        return out

    def to_toml(self) -> str:
        import tomli_w  # only `svc load` writes a spec (issue 18: start-up)

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "spec") -> ServiceSpec:
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise SpecError(f"{source}: unknown key(s) {', '.join(unknown)}")
        if "plan_dir" not in raw or not isinstance(raw["plan_dir"], str) or not raw["plan_dir"]:
            raise SpecError(f"{source}: plan_dir (a path) is required")
        binds = raw.get("binds", [])
        if not isinstance(binds, list) or not all(isinstance(b, str) for b in binds):
            raise SpecError(f"{source}: binds must be a list of 'name:svc.group' strings")
        try:
            return cls(
                plan_dir=Path(raw["plan_dir"]),
                group=raw.get("group", DEFAULT_GROUP),
                org=raw.get("org"),
                topology=raw.get("topology", Topology.STANDALONE),
                strategy=raw.get("update_strategy", UpdateStrategy.NONE),
                binds=tuple(Bind.parse(b) for b in binds),
                binding_mode=raw.get("binding_mode", BindingMode.STRICT),
                health_check_interval_s=raw.get(
                    "health_check_interval", DEFAULT_HEALTH_CHECK_INTERVAL_S
                ),
                shutdown_timeout_s=raw.get("shutdown_timeout"),
                desired_state=raw.get("desired_state", DesiredState.UP),
            )
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None

    @classmethod
    def from_toml(cls, text: str, source: str = "spec") -> ServiceSpec:
        import tomllib  # with the first saved spec, not at start (issue 18)

        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"{source}: invalid TOML: {e}") from None
        return cls.from_dict(raw, source)


_KEYS: Final = frozenset(
    {
        "plan_dir",
        "group",
        "org",
        "topology",
        "update_strategy",
        "binds",
        "binding_mode",
        "health_check_interval",
        "shutdown_timeout",
        "desired_state",
    }
)


def _binds(value: Iterable[Any]) -> tuple[Bind, ...]:
    if isinstance(value, str):
        raise SpecError("binds must be a list, not a string")
    out: list[Bind] = []
    for item in value:
        if isinstance(item, str):
            bind = Bind.parse(item)
        elif isinstance(item, tuple | list) and len(item) == 2:
            bind = Bind.of(str(item[0]), str(item[1]))
        else:
            raise SpecError(f"bind {item!r} is neither 'name:svc.group' nor (name, svc.group)")
        if any(b.name == bind.name for b in out):
            raise SpecError(f"bind {bind.name!r} given twice")
        out.append(bind)
    return tuple(out)
