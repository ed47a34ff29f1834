"""JSON of the HTTP service API in Habitat's shape (pure: reads a Service, does no I/O).

``service_json`` is one ``/services`` entry with Habitat's field names (HABITAT.md's example and
habitat-sh/habitat's ``sample-services-with-cfg-output.json``): binding_mode, binds, cfg,
desired_state, health_check (Ok|Warning|Critical|Unknown), health_check_interval {secs, nanos},
hooks (null or {render_pair, stdout_log_path, stderr_log_path} per hook), initialized,
last_election_status, pkg, process {pid, state up|down, state_entered}, restart_count,
service_group, spec_ident, sys, topology, update_strategy. pysup's own state (the state machine,
why it waits, the last error, a pending update) is under ``pysup`` so Habitat's names stay
untouched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from pysup.census import plain_data

if TYPE_CHECKING:
    from pysup.service.service import Service

HOOK_KEYS: Final = (
    ("file_updated", "file-updated"),
    ("health_check", "health-check"),
    ("init", "init"),
    ("install", "install"),
    ("post_run", "post-run"),
    ("post_stop", "post-stop"),
    ("reconfigure", "reconfigure"),
    ("run", "run"),
    ("suitability", "suitability"),
)
"""JSON key -> hook file name, in Habitat's (alphabetical) order."""


def duration_json(seconds: float) -> dict[str, int]:
    """Rust's ``Duration`` as serde writes it: ``{"secs": 30, "nanos": 0}``."""
    frac, whole = math.modf(max(seconds, 0.0))
    return {"secs": int(whole), "nanos": round(frac * 1e9)}


def hooks_json(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in HOOK_KEYS:
        if name not in svc.templates.hooks:
            out[key] = None
            continue
        out[key] = {
            "render_pair": str(svc.svc_path / "hooks" / name),
            "stdout_log_path": str(svc.svc_path / "logs" / f"{name}.stdout.log"),
            "stderr_log_path": str(svc.svc_path / "logs" / f"{name}.stderr.log"),
        }
    return out


def process_json(svc: Service) -> dict[str, Any]:
    """The run process as `/services` shows it, and `svc status` too: one source for both, so
    they never disagree (a crash-looping service is `down`, with no pid, in each)."""
    process = svc.process
    return {
        "pid": process.pid,
        "state": process.state.value,
        "state_entered": int(process.state_entered),
    }


def service_json(svc: Service) -> dict[str, Any]:
    """One ``/services`` entry."""
    from pysup.service.context import pkg_context, sys_context  # loaded with the first service

    plan = svc.plan
    pkg = pkg_context(plan, svc.cfg)
    pkg["shutdown_signal"] = plan.shutdown_signal
    pkg["shutdown_timeout"] = (
        int(svc.shutdown_timeout_s)
        if float(svc.shutdown_timeout_s).is_integer()
        else svc.shutdown_timeout_s
    )
    process = svc.process
    return {
        "binding_mode": svc.spec.binding_mode.value,
        "binds": [str(b) for b in svc.spec.binds],
        "cfg": plain_data(svc.cfg),
        "desired_state": svc.desired_state.value,
        "health_check": svc.health_status().api_name,
        "health_check_interval": duration_json(svc.spec.health_check_interval_s),
        "hooks": hooks_json(svc),
        "initialized": svc.initialized,
        "last_election_status": svc.election_status.value,
        "pkg": pkg,
        "process": process_json(svc),
        "restart_count": process.restart_count,
        "service_group": str(svc.sg),
        "spec_ident": {"origin": plan.origin, "name": plan.name, "version": None, "release": None},
        "sys": sys_context(svc.sys_info, svc.member_id),
        "topology": svc.spec.topology.value,
        "update_strategy": svc.spec.strategy.value,
        "pysup": {
            "state": svc.state.value,
            "reason": svc.reason,
            "last_error": svc.last_error,
            "incarnation": svc.incarnation,
            "update": svc.update_status,
        },
    }


def service_key(svc: Service) -> tuple[Any, ...]:
    """Everything `service_json` reads that can change while the service is loaded: equal keys
    give the same JSON, so the gateway serves its cached body (``pysup.gateway.bodycache``).
    The plan, spec, templates and sys_info are never replaced on a loaded Service (an update
    loads a new one); `cfg` is replaced, never mutated, when the layers are merged again."""
    process = svc.process
    return (
        svc,
        svc.cfg,
        svc.desired_state,
        svc.health_status(),
        svc.initialized,
        svc.election_status,
        process.pid,
        process.state,
        process.state_entered,
        process.restart_count,
        svc.state,
        svc.reason,
        svc.last_error,
        svc.incarnation,
        svc.update_status,
    )


def services_json(services: list[Service]) -> list[dict[str, Any]]:
    return [service_json(s) for s in sorted(services, key=lambda s: str(s.sg))]


def config_json(svc: Service) -> dict[str, Any]:
    """``/services/{svc}/{group}/config``: the merged config."""
    result: dict[str, Any] = plain_data(svc.cfg)
    return result


def health_json(svc: Service) -> tuple[dict[str, Any], int]:
    """``/services/{svc}/{group}/health``: (body, HTTP status). stdout/stderr are the last
    health-check hook run's output (empty without a hook)."""
    status = svc.health_status()
    last = svc.last_hook.get("health-check")
    body = {
        "status": status.status_name,
        "stdout": last.stdout_tail if last is not None else "",
        "stderr": last.stderr_tail if last is not None else "",
    }
    return body, status.http_status


__all__ = [
    "config_json",
    "duration_json",
    "health_json",
    "hooks_json",
    "service_json",
    "services_json",
]


def status_row(svc: Service, now: float) -> dict[str, Any]:
    """One line of ``svc status``: Habitat's columns (``type`` is the topology here). state,
    pid and elapsed are the run process's, read as ``/services`` reads them (`process_json`);
    elapsed is the time since it last changed state (started, exited, stopped)."""
    process = process_json(svc)
    return {
        "name": svc.name,
        "package": svc.plan.ident,
        "type": svc.spec.topology.value,
        "desired": svc.desired_state.value.lower(),
        "state": process["state"],
        "elapsed_s": max(0, int(now) - process["state_entered"]),
        "pid": process["pid"],
        "group": str(svc.service_group),
    }
