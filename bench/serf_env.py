"""Serf's environment for the benchmark: binary and install, timing profiles, ports, capacity.

``bench/setup`` (or ``ensure_serf()``) installs the Debian ``serf`` package; nothing is installed at
import time.
"""

from __future__ import annotations

import math
import random
import resource
import shutil
import subprocess
from collections.abc import Collection

from bench import measure
from pysup.testing.ports import bindable

HOST = "127.0.0.1"


#: memberlist timing behind each ``-profile`` (seconds). From memberlist's DefaultLANConfig /
#: DefaultWANConfig / DefaultLocalConfig; the serf agent applies them unchanged.
PROFILES: dict[str, dict[str, float]] = {
    "lan": {
        "probe_interval": 1.0,
        "probe_timeout": 0.5,
        "gossip_interval": 0.2,
        "gossip_nodes": 3,
        "suspicion_mult": 4,
        "suspicion_max_timeout_mult": 6,
        "retransmit_mult": 4,
        "indirect_checks": 3,
        "push_pull_interval": 30.0,
    },
    "local": {
        "probe_interval": 1.0,
        "probe_timeout": 0.2,
        "gossip_interval": 0.1,
        "gossip_nodes": 3,
        "suspicion_mult": 3,
        "suspicion_max_timeout_mult": 6,
        "retransmit_mult": 2,
        "indirect_checks": 1,
        "push_pull_interval": 15.0,
    },
    "wan": {
        "probe_interval": 5.0,
        "probe_timeout": 3.0,
        "gossip_interval": 0.5,
        "gossip_nodes": 4,
        "suspicion_mult": 6,
        "suspicion_max_timeout_mult": 6,
        "retransmit_mult": 4,
        "indirect_checks": 3,
        "push_pull_interval": 60.0,
    },
}


def suspicion_timeout_bounds(profile: str, n: int) -> tuple[float, float]:
    """memberlist's (min, max) suspicion timeout for a cluster of n (Lifeguard)."""
    p = PROFILES[profile]
    base = p["suspicion_mult"] * max(1.0, math.log10(max(1, n))) * p["probe_interval"]
    return base, base * p["suspicion_max_timeout_mult"]


class SerfMissingError(RuntimeError):
    """No ``serf`` binary on PATH; run ``bench/setup`` (apt-get install -y serf)."""


class ClusterError(RuntimeError):
    """An agent exited unexpectedly or the cluster could not be started."""


def serf_binary() -> str:
    path = shutil.which("serf")
    if path is None:
        raise SerfMissingError("serf not found on PATH; run bench/setup (apt-get install -y serf)")
    return path


def ensure_serf() -> str:
    """Install Serf with apt-get if it is missing (needs root). Used by ``bench/setup``."""
    path = shutil.which("serf")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "serf"], check=True)
    return serf_binary()


def serf_version() -> str:
    out = subprocess.run([serf_binary(), "version"], capture_output=True, text=True, check=False)
    version = out.stdout.splitlines()[0].strip() if out.stdout else "unknown"
    pkg = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "serf"], capture_output=True, text=True, check=False
    )
    return f"{version} (deb {pkg.stdout.strip()})" if pkg.returncode == 0 else version


def free_ports(
    count: int,
    host: str = HOST,
    lo: int = 20000,
    hi: int = 32000,
    exclude: Collection[int] = (),
) -> list[int]:
    """``count`` ports bindable for both TCP and UDP, below Linux's ephemeral range, none of
    `exclude` (ports handed out earlier whose process may not have bound them yet)."""
    start = random.randrange(lo, hi)
    ports: list[int] = []
    for i in range(hi - lo):
        port = lo + (start - lo + i) % (hi - lo)
        if port not in exclude and bindable(host, port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterError(f"only {len(ports)} free ports of {count} needed in [{lo}, {hi})")


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard limit (one RPC socket per agent)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


#: Measured on the project machine (2-core Xeon, Serf 0.9.4, lan profile, N = 10 and 50):
#: ~14-15 MiB resident and ~0.0011-0.0013 CPU s/s per idle agent. Padded for the estimate.
SERF_RSS_MIB_PER_AGENT = 20.0
SERF_IDLE_CPU_PER_AGENT = 0.0015


def capacity_problem(n: int) -> str | None:
    """Why this machine cannot host n Serf agents (+1 joiner), or None if it can."""
    return measure.capacity_problem(n + 1, SERF_RSS_MIB_PER_AGENT, SERF_IDLE_CPU_PER_AGENT)
