"""Which supervisor a control command talks to, and with which secret.

In order: `--member N` (member N of the `pysup ring` run in this directory, from its ring file:
control address and state directory); else `--remote-sup` / `$HAB_LISTEN_CTL` / 127.0.0.1:9632
with the secret from `HAB_CTL_SECRET` / `PYSUP_CTL_SECRET` or `<state dir>/CTL_SECRET`. When
nothing names a supervisor at all and the default state directory has no secret, member 0 of a
ring run here is used, so `pysup svc status` works in the demo's directory as it is. Explicit
flags always win over what the ring file says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pysup.gateway.ctl_auth import (
    CTL_SECRET_FILE,
    SECRET_ENV_VARS,
    CtlSecretError,
    resolve_client_secret,
)
from pysup.ringinfo import (
    DEFAULT_RING_ROOT,
    RING_ROOT_ENV,
    MemberAddrs,
    RingFileError,
    find_member,
)

DEFAULT_CTL: Final = "127.0.0.1:9632"
DEFAULT_STATE_DIR: Final = "/hab/sup/default"
EXPLICIT_ENV: Final = ("HAB_LISTEN_CTL", "PYSUP_STATE_DIR", *SECRET_ENV_VARS)
"""Variables that name a supervisor or its secret: with any set, no ring member is implied."""


class UserError(Exception):
    """Something the operator must fix; printed as one line."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    secret: str
    note: str | None = None
    """A line for stderr when the target was implied (which ring member was picked)."""


def parse_addr(value: str, default_port: int, what: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too); a wildcard host means this machine."""
    text = value.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise UserError(f"{what} {value!r}: port must be a number") from None
    if not 0 < port <= 65535:
        raise UserError(f"{what} {value!r}: port out of range")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, port


def ring_root(flag: str | None, env: Mapping[str, str]) -> Path:
    return Path(flag or env.get(RING_ROOT_ENV) or DEFAULT_RING_ROOT)


def ring_member(root: Path, index: int) -> MemberAddrs:
    try:
        return find_member(root, index)
    except RingFileError as e:
        raise UserError(
            f"--member {index}: {e}; run in the directory where `pysup ring` runs, "
            "or give its --state-root as --ring-root DIR"
        ) from None


def control_target(
    *,
    remote: str | None,
    state_dir: str | None,
    member: int | None,
    ring_root_flag: str | None,
    env: Mapping[str, str],
) -> Target:
    """The control gateway and secret for the flags given (None: flag not given)."""
    root = ring_root(ring_root_flag, env)
    addrs: MemberAddrs | None = None
    note = None
    if member is not None:
        addrs = ring_member(root, member)
    elif not (remote or state_dir or any(env.get(v) for v in EXPLICIT_ENV)):
        addrs = _implied_member(root)
        if addrs is not None:
            note = f"pysup: member 0 of the ring in {root} (--member N for another)"
    if addrs is not None:
        where = remote or addrs.ctl
        state = Path(state_dir or addrs.state_dir)
    else:
        where = remote or env.get("HAB_LISTEN_CTL") or DEFAULT_CTL
        state = Path(state_dir or env.get("PYSUP_STATE_DIR") or DEFAULT_STATE_DIR)
    host, port = parse_addr(where, 9632, "--remote-sup")
    return Target(host, port, _secret(state, env), note)


def _implied_member(root: Path) -> MemberAddrs | None:
    """Member 0 of a ring run here, unless a supervisor's secret is at the default place."""
    if (Path(DEFAULT_STATE_DIR) / CTL_SECRET_FILE).exists():
        return None
    try:
        return find_member(root, 0)
    except RingFileError:
        return None


def _secret(state: Path, env: Mapping[str, str]) -> str:
    try:
        return resolve_client_secret(state, env)
    except CtlSecretError as e:
        if (state / CTL_SECRET_FILE).exists():
            raise UserError(str(e)) from None
        raise UserError(
            f"no control gateway secret: {state / CTL_SECRET_FILE} does not exist (a supervisor "
            "writes it at first start). Name the supervisor with --state-dir DIR (its state "
            "directory), --member N (member N of the `pysup ring` run in this directory), or "
            f"set {SECRET_ENV_VARS[0]} (with --remote-sup for another machine)"
        ) from None
