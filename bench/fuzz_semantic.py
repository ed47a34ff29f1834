"""The `semantic` fuzz target: well-formed messages with extreme values, fed to a real core whose
state is checked after every input (`python -m bench.fuzz --targets semantic`).

Inputs (seeded): random messages built by `bench.hostile.extreme_message` (incarnations at and
around 2^63 and 2^64, host names and garbage as addresses, `../` names, cfg values TOML or JSON
cannot hold, nesting around the depth limit, 2,000-member push-pulls), the fixed attacks of issue
13 (`suspect` at 2^64-1, poison cfg, bad file name, name address, member floods, empty-map
datagrams and frames), and mutations of both. Allowed outcomes: a `CodecError` with a documented
reason, or a message the core takes. After each input that decodes, the core must still hold:

- its own incarnation at most MAX_INCARNATION, and every member's address an IP literal;
- at most `max_members` members;
- a state that encodes (push-pull and the rumor file) and decodes back whole: nothing stored
  that a receiver or the next start would refuse;
- a `/butterfly` and `/census` rendering that is strict JSON (no NaN, no bytes).

A core that raises, or a broken invariant, is a failure (input printed, exit 1).
"""

from __future__ import annotations

import json
import random

from bench import hostile
from bench.fuzz import Counts, FuzzFailure, mutate
from pysup.butterfly import codec
from pysup.butterfly.config import LAN, MAX_INCARNATION
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Effect, Rejected
from pysup.butterfly.member import Member
from pysup.butterfly.messages import MemberRumor, PushPull, RumorPush
from pysup.butterfly.validate import is_ip_literal
from pysup.census import census_json
from pysup.census_build import build_census
from pysup.gateway.http import butterfly_json

CONFIG = LAN.with_(max_members=3000)
"""A cap a 2,000-member push-pull and a few floods reach, so the cap's path is exercised."""
RESET_EVERY = 500
"""A fresh core every this many inputs (the state is checked after each one anyway)."""


def fixed_attacks(rng: random.Random) -> list[bytes]:
    x = rng.randbytes(16).hex()
    return [
        hostile.suspect(x, "10.0.0.9", 9638),
        hostile.suspect(x, "10.0.0.9", 9638, MAX_INCARNATION),
        hostile.suspect(x, "10.0.0.9", 9638, MAX_INCARNATION - 1),
        hostile.poison_service(),
        hostile.poison_service(value=float("nan")),
        hostile.deep_cfg(),
        hostile.deep_cfg(31),
        hostile.bad_file(),
        hostile.name_address(),
        hostile.empty_maps_datagram(8000),
        *hostile.member_flood(200, start=rng.randrange(10**6)),
    ]


def check_state(core: SwimCore) -> str | None:
    """The broken invariant, or None."""
    me = core.me
    if me.incarnation > MAX_INCARNATION:
        return f"own incarnation {me.incarnation} beyond the bound"
    members = list(core.members())
    if len(members) > core.config.max_members:
        return f"{len(members)} members over the cap"
    bad = [m.address for m in members if not is_ip_literal(m.address)]
    if bad:
        return f"member addresses that are not IP literals: {bad[:3]}"
    sent = [r.member for r in core.all_rumors() if isinstance(r, MemberRumor)]  # as push-pull
    try:
        state = codec.encode(PushPull(me, (me, *sent), tuple(core.store)))
        again = codec.decode(state, None, codec.MAX_FRAME)
        saved = codec.decode_rumors(codec.encode_rumors(core.all_rumors()))
    except Exception as e:
        return f"state does not round-trip: {type(e).__name__}: {e}"
    if not isinstance(again, PushPull) or len(again.rumors) != len(core.store):
        return "push-pull of the state lost rumors"
    if len(saved) != len(core.all_rumors()):
        return "the rumor file would lose rumors at the next start"
    try:
        json.dumps(butterfly_json(me, members, core.store), allow_nan=False)
        json.dumps(census_json(build_census(me, members, core.store)), allow_nan=False)
    except (TypeError, ValueError) as e:
        return f"/butterfly or /census is not strict JSON: {e}"
    return None


def new_core(rng: random.Random) -> SwimCore:
    me = Member(rng.randbytes(16).hex(), 1, "10.0.0.1", 9638)
    return SwimCore(CONFIG, me, random.Random(rng.randrange(2**32)), 0.0)


def fuzz_semantic(n: int, rng: random.Random, counts: Counts) -> None:
    core, now = new_core(rng), 0.0
    pool = fixed_attacks(rng)
    for i in range(n):
        if i % RESET_EVERY == 0 and i:
            core, now = new_core(rng), 0.0
        kind = rng.randrange(10)
        if kind < 6:
            data = hostile.extreme_message(rng)
        elif kind < 9:
            data = rng.choice(pool)
        else:
            data = mutate(rng, rng.choice(pool), pool)
        stream = rng.random() < 0.3
        limit = codec.MAX_FRAME if stream else codec.MAX_DATAGRAM
        try:
            msg = codec.decode(data, None, limit)
        except codec.CodecError as e:
            if e.reason not in codec.REASONS:
                raise FuzzFailure(
                    "semantic", i, data, f"undocumented reason {e.reason!r}"
                ) from None
            counts.saw(f"rejected:{e.reason}")
            continue
        except Exception as e:
            raise FuzzFailure("semantic", i, data, f"{type(e).__name__}: {e}") from e
        now += 0.05
        # Half from one source (its admission bucket runs dry), half from forged ones.
        src = ("192.0.2.1", 9638) if rng.random() < 0.5 else (f"192.0.2.{rng.randrange(255)}", 9)
        try:
            effects: list[Effect]
            if isinstance(msg, PushPull | RumorPush):
                _, effects = core.receive_stream(src, msg, now)
            else:
                effects = core.receive(src, msg, now)
            effects += core.tick(now)
        except Exception as e:
            raise FuzzFailure("semantic+core", i, data, f"core: {type(e).__name__}: {e}") from e
        problem = check_state(core)
        if problem is not None:
            raise FuzzFailure("semantic+state", i, data, problem)
        refused = {e.reason for e in effects if isinstance(e, Rejected)}
        counts.saw("decoded" + "".join(f"+{r}" for r in sorted(refused)))
