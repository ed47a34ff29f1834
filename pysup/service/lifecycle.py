"""The states of a loaded service, their transition table, and the timing of its hook sequence
and of its elections (``ElectionTuning``, used by ``coordination``)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pysup.election import DEFAULT_STUCK_AFTER_S
from pysup.service.backoff import RestartBackoff


class ServiceState(enum.Enum):
    LOADED = "loaded"
    WAITING = "waiting"
    """Desired up, but hooks are held back (election not finished, strict binds not ready)."""
    INITIALIZING = "initializing"
    """install/init are running or being retried."""
    UP = "up"
    """The run process is supervised (it may be between a crash and its restart)."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    """Cannot proceed until something changes (a template or config that does not render)."""
    UNLOADED = "unloaded"


class OrphanPolicy(enum.Enum):
    """What a supervisor does at start with a run process its killed predecessor left running."""

    ADOPT = "adopt"
    """Supervise it from now on: no downtime (as Habitat's launcher keeps services)."""
    STOP = "stop"
    """Stop it (shutdown signal, timeout, KILL) and start a fresh one: a restart."""


_S = ServiceState
TRANSITIONS: Final[Mapping[ServiceState, frozenset[ServiceState]]] = {
    _S.LOADED: frozenset({_S.WAITING, _S.INITIALIZING, _S.UP, _S.STOPPED, _S.FAILED, _S.UNLOADED}),
    _S.WAITING: frozenset({_S.INITIALIZING, _S.STOPPED, _S.FAILED, _S.UNLOADED}),
    _S.INITIALIZING: frozenset({_S.UP, _S.WAITING, _S.FAILED, _S.STOPPED, _S.UNLOADED}),
    _S.UP: frozenset({_S.STOPPING}),
    _S.STOPPING: frozenset({_S.STOPPED}),
    _S.STOPPED: frozenset({_S.WAITING, _S.INITIALIZING, _S.FAILED, _S.UNLOADED}),
    _S.FAILED: frozenset({_S.WAITING, _S.INITIALIZING, _S.STOPPED, _S.UNLOADED}),
    _S.UNLOADED: frozenset(),
}
"""Allowed transitions (staying in a state is always allowed). UP only leaves through STOPPING:
a running service keeps running when its config breaks or its election restarts (as Habitat).
LOADED -> UP: the run process of a killed supervisor was adopted (it was initialized then)."""


class IllegalTransition(RuntimeError):
    """A transition not in ``TRANSITIONS``: a bug in the service logic, never an operator error."""


@dataclass(frozen=True)
class ElectionTuning:
    """Timing and policy of elections. Seconds throughout."""

    tick_s: float = 1.0
    """How often elections are re-evaluated without a census change (timeouts, restarts)."""
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S
    """A candidate still missing votes after this long finishes with a majority's votes; any
    member restarts an election unfinished after twice this long. Long enough for a slow
    suitability hook and gossip on a big ring; short enough that a group is not leaderless long."""
    stop_without_quorum: bool = True
    """Stop a running leader-topology service while a majority of its group (counting Suspect
    members as reachable) is gone, so a minority side never keeps serving as a second leader.
    False: keep it running, as Habitat does (hooks are still held back)."""
    external_leader: bool = False
    """The leader is decided outside the ring (Kubernetes-native mode: the Lease holder, which
    ``pysup.native`` publishes as a Finished Election rumor). This member then runs no election
    (no votes, no suitability hook, no update election: Kubernetes rolls the pods) and only gates
    its hooks on that rumor; the quorum fence is off too, since the Lease (its renew deadline)
    is what keeps two leaders from acting at once."""


@dataclass(frozen=True)
class ServiceTuning:
    """Timing of the hook sequence. Seconds throughout."""

    hook_timeout_s: float = 60.0
    """How long a non-run hook may run before its process group is killed (TERM, grace, KILL) and
    the run is reported failed (health-check: UNKNOWN). Long enough for a slow init; short enough
    that a hung health check is noticed within a couple of intervals."""
    hook_kill_grace_s: float = 2.0
    """Between TERM and KILL of a timed-out hook."""
    init_retry_base_s: float = 1.0
    """First delay before retrying a failed install/init; grows with decorrelated jitter."""
    init_retry_max_s: float = 30.0
    """Cap of the install/init retry delay."""
    post_run_retry_s: float = 1.0
    """First delay before retrying a failed post-run (doubles, capped at init_retry_max_s)."""
    restart_backoff: Callable[[], RestartBackoff] = RestartBackoff
    """Factory of the run process's restart backoff (base 1 s, cap 60 s, cooldown 300 s)."""
    failure_recheck_s: float = 30.0
    """Upper bound of the delay before re-running a health check after a non-OK result."""
    first_check_hold_s: float = 2.0
    """A service just up with a health-check hook is gossiped only once that first check has
    answered (it runs at once and usually takes ~0.1 s), at most this long after coming up:
    otherwise every load gossiped two versions of its Service rumor (health Unknown, then the
    result), and at N=100 every member decodes each version ~6 times and rebuilds its census for
    it (bench/README.md, goal 6). Long enough for a check that forks a shell on a busy machine;
    short enough that a slow check does not keep the service out of the census for long."""
    orphans: OrphanPolicy = OrphanPolicy.ADOPT
    """A run process left by a supervisor that was killed (``pidfile`` proves it is that process):
    ADOPT keeps it serving through the supervisor's restart, which is why a supervisor restarts;
    STOP trades a restart of the service for a fresh process (environment, binary, log pipes)."""
    election: ElectionTuning = field(default_factory=ElectionTuning)
    """Timing and policy of leader and update elections (``ElectionTuning``)."""
