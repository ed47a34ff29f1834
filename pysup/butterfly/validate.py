"""What a gossiped value may be, checked all the way down before it reaches the store (pure).

The codec calls these on every rumor it decodes, the core on every rumor published here, and the
rumor file loader on every saved rumor, so one rule decides what the ring carries:

- addresses are IP literals (v4 or v6): sending to a name would resolve it inside the event loop;
- exported `cfg` and `sys` maps hold only what both TOML and JSON can hold (strings, booleans,
  64-bit signed integers, finite floats, lists, string-keyed tables), nested at most
  `MAX_VALUE_DEPTH` deep: a value the HTTP API cannot render or a template cannot read must never
  enter the store (a nested `bytes` made `/butterfly` answer 500 on every member, for good);
- service groups have the census's syntax and file names pass the rule `file upload` applies
  at write time, so a name that would be refused on disk is refused on receipt too.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

MAX_VALUE_DEPTH: Final = 32
"""Deepest nesting of lists and tables in an exported cfg/sys value. A TOML config nests a few
tables deep; 32 leaves room for any real one while bounding the validator's recursion (and the
depth a hostile value can make every template and JSON encoder walk)."""
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

GROUP_PART_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
"""A group or organization name: letters, digits, ``_`` and ``-``; not starting with ``-``."""
SERVICE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""A service name: as a group name, and dots too (plan names may hold them)."""
MAX_FILE_NAME_BYTES: Final = 255
"""Longest gossiped file name, in UTF-8 bytes: the longest name a Linux file system accepts."""

MAX_ADDRESS_LEN: Final = 64
"""Longest address accepted: an IPv6 literal with an embedded IPv4 (45 characters) and a zone."""
IP_LITERALS: set[str] = set()
"""Addresses already found to be IP literals. A ring has one address per member, so honest
traffic hits this set (a membership test instead of a parse on the hottest decode path); names
and garbage are never added, so hostile strings only cost a parse each."""
_CACHE_MAX: Final = 4096


def is_ip_literal(address: str) -> bool:
    """True for an IPv4 or IPv6 literal (``10.0.0.1``, ``::1``, ``fe80::1%eth0``), never a name."""
    if address in IP_LITERALS:
        return True
    if len(address) > MAX_ADDRESS_LEN:
        return False
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    if len(IP_LITERALS) >= _CACHE_MAX:
        IP_LITERALS.clear()  # ever-new valid literals (forged): start over
    IP_LITERALS.add(address)
    return True


def plain_value_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` cannot be gossiped as exported config, or None when it can."""
    return _items_problem((value,), depth)


def plain_map_problem(value: Mapping[Any, Any], depth: int = 0) -> str | None:
    """Why a cfg/sys map cannot be gossiped (keys must be strings), or None when it can."""
    for k in value:
        if type(k) is not str:
            return f"{type(k).__name__} key"
    problem = _items_problem(value.values(), depth)
    if problem is None:
        return None
    for k, v in value.items():  # the error path only: name the key
        if _items_problem((v,), depth) is not None:
            return f"{k!r}: {problem}"
    return problem


def _items_problem(items: Iterable[Any], depth: int) -> str | None:
    # Runs on every Service rumor decoded: scalars are checked inline, one call per container.
    for v in items:
        t = type(v)
        if t is str or t is bool:
            continue
        if t is int:
            if _I64_MIN <= v <= _I64_MAX:
                continue
            return "integer outside 64-bit signed range"
        if t is float:
            if math.isfinite(v):
                continue
            return "non-finite float"
        if t is not list and t is not dict:
            return f"{t.__name__} value"
        if depth >= MAX_VALUE_DEPTH:
            return f"nested deeper than {MAX_VALUE_DEPTH}"
        problem = _items_problem(v, depth + 1) if t is list else plain_map_problem(v, depth + 1)
        if problem is not None:
            return problem
    return None


def split_service_group(text: str) -> tuple[str, str, str | None]:
    """``service.group[@org]`` into its parts; ``ValueError`` says what is wrong. The group is
    whatever follows the *last* dot (service names may hold dots)."""
    base, at, org = text.partition("@")
    service, dot, group = base.rpartition(".")
    if not dot or not service:
        raise ValueError(f"service group {text!r} is not of the form service.group[@org]")
    check_service_group_parts(service, group, org if at else None)
    return service, group, org if at else None


def check_service_group_parts(service: str, group: str, org: str | None) -> None:
    """``ValueError`` naming the part of a service group that is not valid."""
    if not SERVICE_NAME_RE.fullmatch(service):
        raise ValueError(f"invalid service name {service!r}")
    if not GROUP_PART_RE.fullmatch(group):
        raise ValueError(f"invalid group name {group!r}")
    if org is not None and not GROUP_PART_RE.fullmatch(org):
        raise ValueError(f"invalid organization name {org!r}")


_GROUP_CACHE: dict[str, str | None] = {}


def service_group_problem(text: str) -> str | None:
    """Why `text` is not a service group (None: it is). Cached like addresses: a ring has few
    groups, and every Service rumor names one."""
    if text in _GROUP_CACHE:
        return _GROUP_CACHE[text]
    try:
        split_service_group(text)
        problem = None
    except ValueError as e:
        problem = str(e)
    if len(text) <= MAX_ADDRESS_LEN * 4:
        if len(_GROUP_CACHE) >= _CACHE_MAX:
            _GROUP_CACHE.clear()
        _GROUP_CACHE[text] = problem
    return problem


def file_name_problem(name: str) -> str | None:
    """Why a file uploaded to a service group (it lands in ``files/``) may not have this name."""
    if not name or name in (".", "..") or ".." in name:
        return f"file name {name!r} may not be empty or contain '..'"
    if "/" in name or "\\" in name:
        return f"file name {name!r} may not contain a path separator"
    if "\x00" in name or not name.isprintable():
        return f"file name {name!r} may not contain control characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        return f"file name is longer than {MAX_FILE_NAME_BYTES} bytes"
    return None
