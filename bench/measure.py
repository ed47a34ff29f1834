"""Shared measurement plumbing for the benchmark suite (pysup and Serf sides alike).

- ``percentile`` / ``Result.from_samples``: one record per (system, metric, N) with raw samples.
- ``/proc`` sampling: CPU seconds (utime + stime) and RSS for a set of pids.
- ``describe_machine``: what the numbers were measured on (they are meaningless without it).
- ``write_results`` / ``read_results``: ``bench/results/<name>-<date>.json``.

Conventions every producer follows so the report can put systems side by side:

- ``system`` is ``"pysup"`` or ``"serf"`` (free text, but the report pairs those two).
- ``metric`` is one of ``METRICS``; convergence metrics are in seconds measured from the stimulus
  (agents started / extra member started / event sent / victim killed) until an observer saw the
  effect; ``samples`` holds one value per observing node per repeat, so p50 is the typical node
  and p99 is (close to) the last node. ``meta["all_s"]`` lists, per repeat, the time until every
  observer saw it (the max), and ``meta["timeouts"]`` counts observers that never did.
- ``cpu`` samples are CPU seconds per agent per wall second over an idle window; ``rss`` samples
  are resident MiB per agent.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: metric name -> unit. Producers use these names so both systems line up in the report.
METRICS: dict[str, str] = {
    "bootstrap": "s",  # all N agents started with one seed until each lists N alive
    "join": "s",  # one extra member started until each existing member lists it alive
    "event": "s",  # user event sent from one agent until each other agent received it
    "failure_detection": "s",  # kill -9 of one agent until each other agent lists it failed
    "failure_detection_newcomer": "s",  # the same, of a member killed seconds after joining
    "cpu": "cpu_s/s",  # CPU seconds per agent per wall-clock second, idle converged cluster
    "rss": "MiB",  # resident set size per agent, idle converged cluster
}


def percentile(samples: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    Matches numpy's default ("linear") method: rank = q/100 * (n-1). NaN for no samples.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    xs = sorted(samples)
    if not xs:
        return math.nan
    rank = q / 100.0 * (len(xs) - 1)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


@dataclass(frozen=True)
class Result:
    """Samples of one metric for one system at one cluster size."""

    system: str
    metric: str
    n: int
    samples: tuple[float, ...]
    p50: float
    p99: float
    unit: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Free-form context: profile, repeats, poll interval, per-repeat maxima, timeouts."""

    @classmethod
    def from_samples(
        cls,
        system: str,
        metric: str,
        n: int,
        samples: Iterable[float],
        unit: str | None = None,
        **meta: Any,
    ) -> Result:
        xs = tuple(float(x) for x in samples)
        if unit is None:
            unit = METRICS.get(metric, "")
        meta.setdefault("mean", math.fsum(xs) / len(xs) if xs else math.nan)
        return cls(
            system=system,
            metric=metric,
            n=n,
            samples=xs,
            p50=percentile(xs, 50),
            p99=percentile(xs, 99),
            unit=unit,
            meta=dict(meta),
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = list(self.samples)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Result:
        return cls(
            system=str(d["system"]),
            metric=str(d["metric"]),
            n=int(d["n"]),
            samples=tuple(float(x) for x in d["samples"]),
            p50=_float_or_nan(d.get("p50")),
            p99=_float_or_nan(d.get("p99")),
            unit=str(d.get("unit", "")),
            meta=dict(d.get("meta") or {}),
        )


def _float_or_nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def merge_results(results: Iterable[Result]) -> list[Result]:
    """Pool samples of records with the same (system, metric, n), e.g. from several runs."""
    groups: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.system, r.metric, r.n), []).append(r)
    merged = []
    for (system, metric, n), rs in groups.items():
        if len(rs) == 1:
            merged.append(rs[0])
            continue
        meta: dict[str, Any] = {}
        for r in rs:
            for k, v in r.meta.items():
                if k == "mean":
                    continue  # recomputed from the pooled samples
                if isinstance(v, list) and isinstance(meta.get(k), list):
                    meta[k] = meta[k] + v
                elif isinstance(v, int | float) and k in ("timeouts", "repeats"):
                    meta[k] = meta.get(k, 0) + v
                else:
                    meta.setdefault(k, v)
        samples = [x for r in rs for x in r.samples]
        merged.append(Result.from_samples(system, metric, n, samples, rs[0].unit, **meta))
    return merged


# -- /proc sampling -------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_proc_stat_cpu(stat_line: str, clk_tck: int = _CLK_TCK) -> float:
    """utime + stime in seconds from the text of ``/proc/<pid>/stat``.

    The comm field may contain spaces and parentheses, so fields are counted after the last ')'.
    utime and stime are fields 14 and 15 (1-based) of the whole line.
    """
    rest = stat_line[stat_line.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field k is rest[k - 3].
    return (int(rest[14 - 3]) + int(rest[15 - 3])) / clk_tck


def parse_vmrss_mib(status_text: str) -> float:
    """VmRSS in MiB from the text of ``/proc/<pid>/status`` (NaN if absent, e.g. a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            kib = int(line.split()[1])
            return kib / 1024.0
    return math.nan


def parse_proc_stat_children_cpu(stat_line: str, clk_tck: int = _CLK_TCK) -> float:
    """cutime + cstime in seconds (fields 16 and 17): CPU of reaped children, such as the hooks
    a supervisor ran and waited for."""
    rest = stat_line[stat_line.rindex(")") + 2 :].split()
    return (int(rest[16 - 3]) + int(rest[17 - 3])) / clk_tck


def cpu_seconds(pids: Iterable[int], children: bool = False) -> dict[int, float]:
    """Current utime+stime (s) per pid (plus its reaped children's with `children`); pids that
    vanished are omitted."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                line = f.read()
            out[pid] = parse_proc_stat_cpu(line) + (
                parse_proc_stat_children_cpu(line) if children else 0.0
            )
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return out


def parse_smaps_rollup(text: str) -> dict[str, float]:
    """Every ``Name: N kB`` line of ``/proc/<pid>/smaps_rollup`` in MiB (Rss, Pss, Pss_Anon,
    Pss_File, Shared_Clean, Private_Dirty, Swap...). PSS charges each shared page to the
    processes mapping it in equal parts, so N copies of one interpreter sum to what they
    really use; RSS counts shared libraries in full in every process."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        cols = rest.split()
        if sep and len(cols) == 2 and cols[1] == "kB" and cols[0].isdigit():
            out[name.strip()] = int(cols[0]) / 1024.0
    return out


def memory_mib(pids: Iterable[int]) -> dict[int, dict[str, float]]:
    """``parse_smaps_rollup`` per pid (kernel >= 4.14); pids that vanished are omitted."""
    out: dict[int, dict[str, float]] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                got = parse_smaps_rollup(f.read())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if "Rss" in got:
            out[pid] = got
    return out


def parse_proc_stat_busy(text: str) -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from the first line of ``/proc/stat``; busy excludes
    idle and iowait. Two readings give the machine's busy fraction in between."""
    cols = [int(x) for x in text.splitlines()[0].split()[1:]]
    idle = cols[3] + (cols[4] if len(cols) > 4 else 0)
    total = sum(cols[:8])
    return float(total - idle), float(total)


def cpu_rates(before: Mapping[int, float], after: Mapping[int, float], wall: float) -> list[float]:
    """CPU seconds per wall second for pids present in both snapshots."""
    if wall <= 0:
        raise ValueError("wall time must be positive")
    return [(after[p] - before[p]) / wall for p in before if p in after]


def rss_mib(pids: Iterable[int]) -> dict[int, float]:
    """Resident set size (MiB) per pid; pids that vanished are omitted."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                v = parse_vmrss_mib(f.read())
        except (FileNotFoundError, ProcessLookupError):
            continue
        if not math.isnan(v):
            out[pid] = v
    return out


def capacity_problem(
    n: int,
    rss_mib_per_agent: float,
    cpu_per_agent: float,
    fds_per_agent: int = 2,
    max_cpu_fraction: float = 0.5,
) -> str | None:
    """Why this machine cannot sensibly host n agents, or None if it can.

    ``cpu_per_agent`` is idle CPU seconds per second per agent (measure it at small N); if the
    idle cluster alone would use more than ``max_cpu_fraction`` of all cores, timings would
    measure CPU starvation rather than the protocol.
    """
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < fds_per_agent * n + 64:
        return f"RLIMIT_NOFILE hard limit {hard} < {fds_per_agent * n + 64}"
    need_cpu = n * cpu_per_agent
    cores = os.cpu_count() or 1
    if need_cpu > max_cpu_fraction * cores:
        return (
            f"idle CPU {need_cpu:.2f} cores (n * {cpu_per_agent:g}) > "
            f"{max_cpu_fraction:g} of {cores} cores"
        )
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(x.split()[1]) for x in f if x.startswith("MemAvailable:")) / 1024
    except (OSError, StopIteration):
        return None
    if avail < n * rss_mib_per_agent:
        return f"MemAvailable {avail:.0f} MiB < {n * rss_mib_per_agent:.0f} MiB estimated"
    return None


# -- machine description --------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return math.nan


def describe_machine() -> dict[str, Any]:
    """Cores, CPU model, memory, Python, kernel, load and date of this run."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_gib": _mem_total_gib(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "hostname": socket.gethostname(),
        "loadavg_at_start": load,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


# -- JSON files -----------------------------------------------------------------------------


def results_path(
    name: str, directory: Path = RESULTS_DIR, when: _dt.datetime | None = None
) -> Path:
    when = when or _dt.datetime.now()
    return directory / f"{name}-{when.strftime('%Y%m%d-%H%M%S')}.json"


def write_results(
    results: Sequence[Result],
    name: str,
    directory: Path = RESULTS_DIR,
    machine: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{"machine": ..., "results": [...]}`` to ``<directory>/<name>-<date>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = results_path(name, directory)
    doc = {
        "machine": dict(machine) if machine is not None else describe_machine(),
        "results": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")
    return path


def read_results(path: Path) -> tuple[dict[str, Any], list[Result]]:
    doc = json.loads(Path(path).read_text())
    return dict(doc.get("machine") or {}), [Result.from_json(r) for r in doc["results"]]


@dataclass
class SampleAccumulator:
    """Samples of one metric over repeats: `add((samples, misses))` per repeat; `all_s` keeps
    each repeat's last arrival (NaN when some observer never saw it)."""

    samples: list[float] = field(default_factory=list)
    all_s: list[float] = field(default_factory=list)
    timeouts: int = 0

    def add(self, got: tuple[list[float], int]) -> None:
        samples, misses = got
        self.samples.extend(samples)
        self.timeouts += misses
        self.all_s.append(max(samples) if samples and not misses else math.nan)


def spawn_logged(
    cmd: Sequence[str],
    log_path: Path,
    pgid: int | None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start one agent with its output in `log_path`, in process group `pgid` (a new group led
    by this process when None), so a whole cluster can be killed with one killpg."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            process_group=0 if pgid is None else pgid,
        )


def summary_json(r: Result) -> str:
    """One line of JSON with a Result's headline numbers (the command-line harnesses' output)."""
    return json.dumps(
        {
            "system": r.system,
            "metric": r.metric,
            "n": r.n,
            "p50": r.p50,
            "p99": r.p99,
            "unit": r.unit,
            "timeouts": r.meta.get("timeouts", 0),
        }
    )
