"""bench.cprof_table: a cProfile's time charged to function families (issue 18, goal 6)."""

from __future__ import annotations

import cProfile
from pathlib import Path

from bench.cprof_table import IMPORTS, LOOP, load_stats, summarize, unprofiled

ENC = ("/x/pysup/events/sse.py", 10, "event_frame")
DEC = ("/x/pysup/butterfly/records.py", 20, "_unpack_service")
DUMPS = ("/usr/lib/python3.11/json/__init__.py", 183, "dumps")
ISINST = ("~", 0, "<built-in method builtins.isinstance>")
RUN_ONCE = ("/usr/lib/python3.11/asyncio/base_events.py", 1845, "_run_once")
MODULE = ("/x/pysup/service/service.py", 1, "<module>")


def stats() -> dict[tuple[str, int, str], tuple[int, int, float, float, dict]]:  # type: ignore[type-arg]
    # (cc, nc, tottime, cumtime, callers: {caller: (cc, nc, tt, ct)})
    return {
        RUN_ONCE: (10, 10, 0.5, 3.0, {}),
        ENC: (4, 4, 0.1, 0.9, {RUN_ONCE: (4, 4, 0.1, 0.9)}),
        DEC: (100, 100, 0.2, 1.2, {RUN_ONCE: (100, 100, 0.2, 1.2)}),
        # json.dumps is charged to the event stream that called it
        DUMPS: (4, 4, 0.8, 0.8, {ENC: (4, 4, 0.8, 0.8)}),
        # isinstance: 3/4 of its time under the decoder, 1/4 under the encoder
        ISINST: (1000, 1000, 0.4, 0.4, {DEC: (900, 900, 0.3, 0.3), ENC: (100, 100, 0.1, 0.1)}),
        MODULE: (1, 1, 0.05, 0.05, {RUN_ONCE: (1, 1, 0.05, 0.05)}),
    }


def test_library_time_goes_to_the_pysup_caller_split_by_the_callers_time() -> None:
    s = summarize(stats())
    assert s.families["event encoding (/events)"] == 0.1 + 0.8 + 0.1
    assert s.families["rumor decode/merge"] == 0.2 + 0.3
    assert s.families[LOOP] == 0.5  # no pysup caller at all
    assert s.families[IMPORTS] == 0.05  # a module body is an import, whatever its package
    assert abs(sum(s.families.values()) - s.total_s) < 1e-9
    assert s.counts["service rumors decoded"] == 100


def test_the_profilers_cost_per_call_is_removed_per_family() -> None:
    s = summarize(stats(), overhead_s=1e-4)
    est = unprofiled(s)
    # decode: 100 own calls + 900 isinstance calls charged to it, 1e-4 s each
    assert abs(est["rumor decode/merge"] - (0.5 - 1000 * 1e-4)) < 1e-9
    assert est[LOOP] == 0.5 - 10 * 1e-4


def test_reads_what_cprofile_writes(tmp_path: Path) -> None:
    prof = cProfile.Profile()
    prof.enable()
    sorted([3, 1, 2])
    prof.disable()
    path = tmp_path / "p.prof"
    prof.dump_stats(str(path))
    got = load_stats(path)
    assert any(name == "<built-in method builtins.sorted>" for _f, _l, name in got)
    assert summarize(got).total_s >= 0.0
