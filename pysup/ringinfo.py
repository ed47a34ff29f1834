"""Where the members of a local ring (`pysup ring`) can be reached: `<state-root>/ring.json`.

`pysup ring` writes the file before it starts its members; the control CLI reads it for
`--member N`, so a demo member is found by its number, without looking for its ports or for the
`CTL_SECRET` in its state directory. The file is kept after the ring stops (the state dirs are
too): the addresses stay right for the next run with the same `--base-port`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

RING_FILE: Final = "ring.json"
DEFAULT_RING_ROOT: Final = "state/ring"
"""`pysup ring --state-root`'s default, relative to the directory where the ring runs."""
RING_ROOT_ENV: Final = "PYSUP_RING_ROOT"
DEFAULT_BASE_PORT: Final = 9631
"""Member 0's HTTP port by default: Habitat's, so the README's curl lines work as written."""


class RingFileError(Exception):
    """The ring file is missing or unreadable, or has no such member; the message says which."""


@dataclass(frozen=True)
class MemberAddrs:
    """How to reach member `index` of a local ring."""

    index: int
    http: str
    """HOST:PORT of the HTTP gateway."""
    ctl: str
    """HOST:PORT of the control gateway (what `--remote-sup` takes)."""
    gossip: str
    """HOST:PORT of gossip (UDP and TCP)."""
    state_dir: str
    """Absolute path of the member's state directory (CTL_SECRET, services, rumors)."""


def ring_file(root: Path) -> Path:
    return root / RING_FILE


def write_ring_file(root: Path, members: list[MemberAddrs]) -> Path:
    path = ring_file(root)
    root.mkdir(parents=True, exist_ok=True)
    body = {"members": [asdict(m) for m in members]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_ring_file(root: Path) -> list[MemberAddrs]:
    path = ring_file(root)
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RingFileError(f"no ring file {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RingFileError(f"cannot read ring file {path}: {e}") from None
    try:
        return [
            MemberAddrs(
                index=int(m["index"]),
                http=str(m["http"]),
                ctl=str(m["ctl"]),
                gossip=str(m["gossip"]),
                state_dir=str(m["state_dir"]),
            )
            for m in data["members"]
        ]
    except (KeyError, TypeError, ValueError):
        raise RingFileError(f"ring file {path} is not one `pysup ring` wrote") from None


def find_member(root: Path, index: int) -> MemberAddrs:
    """Member `index` of the ring whose state root is `root`."""
    members = read_ring_file(root)
    for m in members:
        if m.index == index:
            return m
    known = ", ".join(str(m.index) for m in members) or "none"
    raise RingFileError(f"the ring in {root} has no member {index} (members: {known})")
