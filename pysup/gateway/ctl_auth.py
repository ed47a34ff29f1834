"""Control-gateway authentication: the shared secret (Habitat's ``CTL_SECRET``).

The Supervisor creates ``<state>/CTL_SECRET`` at first start (see :class:`pysup.statedir.StateDir`).
A client proves it knows the secret; clients on the same host read the file, remote ones get it
from ``HAB_CTL_SECRET`` (Habitat's variable) or ``PYSUP_CTL_SECRET``, checked in that order.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path

CTL_SECRET_FILE = "CTL_SECRET"
SECRET_ENV_VARS = ("HAB_CTL_SECRET", "PYSUP_CTL_SECRET")


class CtlSecretError(Exception):
    """No control-gateway secret could be found for a client."""


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets in time independent of where they differ (str is taken as UTF-8)."""
    ab = a.encode("utf-8") if isinstance(a, str) else bytes(a)
    bb = b.encode("utf-8") if isinstance(b, str) else bytes(b)
    return hmac.compare_digest(ab, bb)


def resolve_client_secret(state_dir: Path | None, env: Mapping[str, str]) -> str:
    """The secret a control client sends: an env var, else ``<state_dir>/CTL_SECRET``.

    Empty env values count as unset. Raises CtlSecretError naming what was tried.
    """
    for var in SECRET_ENV_VARS:
        value = env.get(var, "").strip()
        if value:
            return value
    tried = " or ".join(SECRET_ENV_VARS)
    if state_dir is None:
        raise CtlSecretError(f"no control gateway secret: set {tried}")
    path = Path(state_dir) / CTL_SECRET_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CtlSecretError(
            f"no control gateway secret: set {tried}, or run where {path} exists "
            "(the Supervisor creates it at first start)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CtlSecretError(f"cannot read control gateway secret {path}: {e}") from e
    if not value:
        raise CtlSecretError(f"control gateway secret file {path} is empty")
    return value
