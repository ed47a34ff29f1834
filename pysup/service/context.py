"""The template context of a service: ``sys``, ``pkg``, ``cfg``, ``svc`` and ``bind`` (pure).

The shape follows Habitat's render context (``sample_render_context.json`` in habitat-sh/habitat):

- ``sys``: ip, hostname, member_id, gossip_ip/port, http_gateway_ip/port, ctl_gateway_ip/port,
  permanent, version (from the supervisor's ``sys_info``; missing keys get neutral defaults);
- ``pkg``: ident, origin, name, version, release, path, svc_* paths, svc_user, svc_group, exports,
  exposes (export keys resolved to their configured port, as Habitat lists ``"9636"``), deps;
- ``cfg``: the merged config;
- ``svc``: service, group, org, me, members, leader, first, update_leader and the
  election_is_* / update_election_is_* flags of the group. ``me`` is always this member as it is
  *now* (fresh cfg and sys, not as last gossiped); ``members`` is every member of the group
  (``eachAlive`` filters the live ones), sorted by member id, with ``me`` in it;
- ``bind.<name>``: for every bind of the spec whose group exists in the census: first, leader,
  members (each member shaped like ``svc.members``).

Members are ``census.member_json`` dicts: member_id, pkg, service, group, org, sys, cfg, the health
flags alive/suspect/confirmed/departed, persistent, leader/follower, update_leader/update_follower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pysup.census import (
    Census,
    CensusGroup,
    CensusMember,
    ElectionState,
    PkgIdent,
    ServiceGroup,
    member_json,
    plain_data,
)
from pysup.service.cfg import lookup_path
from pysup.service.plan import Plan
from pysup.service.spec import BindingMode, ServiceSpec

SYS_DEFAULTS: Final[Mapping[str, Any]] = {
    "ip": "127.0.0.1",
    "hostname": "localhost",
    "member_id": "",
    "gossip_ip": "0.0.0.0",
    "gossip_port": 9638,
    "http_gateway_ip": "0.0.0.0",
    "http_gateway_port": 9631,
    "ctl_gateway_ip": "127.0.0.1",
    "ctl_gateway_port": 9632,
    "permanent": False,
    "version": "",
}
"""The ``sys`` keys and the value used when the supervisor did not provide one."""

RUMOR_SYS_KEYS: Final = (
    "ip",
    "hostname",
    "gossip_ip",
    "gossip_port",
    "http_gateway_ip",
    "http_gateway_port",
    "ctl_gateway_ip",
    "ctl_gateway_port",
)
"""The ``sys`` keys a Service rumor carries (Habitat's ``SysInfo``)."""


def sys_context(sys_info: Mapping[str, Any], member_id: str) -> dict[str, Any]:
    out = {k: sys_info.get(k, v) for k, v in SYS_DEFAULTS.items()}
    out["member_id"] = member_id
    return out


def rumor_sys(sys_info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sys`` of a Service rumor."""
    return {k: sys_info.get(k, SYS_DEFAULTS[k]) for k in RUMOR_SYS_KEYS}


def resolved_exposes(plan: Plan, cfg: Mapping[str, Any]) -> list[str]:
    """``pkg_exposes`` with export keys replaced by their configured value (``port`` -> 8080)."""
    out: list[str] = []
    for item in plan.exposes:
        path = plan.exports.get(item)
        value = lookup_path(cfg, path, None) if path is not None else None
        out.append(str(value) if value is not None and not isinstance(value, Mapping) else item)
    return out


def dep_json(ident: str, path: str | None = None) -> dict[str, Any]:
    """A ``pkg.deps`` entry; ``path`` is where the dependency was found on this host (what
    ``pkgPathFor`` renders; without it, Habitat's ``/hab/pkgs/...`` path)."""
    parsed = PkgIdent.parse(ident)
    if parsed is None:
        out = {"ident": ident, "origin": None, "name": None, "version": None, "release": None}
    else:
        out = {"ident": str(parsed), **parsed.to_json()}
    if path is not None:
        out["path"] = path
    return out


def pkg_context(plan: Plan, cfg: Mapping[str, Any]) -> dict[str, Any]:
    svc = plan.svc_path
    assert svc is not None, "a loaded plan has a svc_path"
    return {
        "ident": plan.ident,
        "origin": plan.origin,
        "name": plan.name,
        "version": plan.version,
        "release": plan.release,
        "path": str(plan.path),
        "svc_path": str(svc),
        "svc_config_path": str(svc / "config"),
        "svc_data_path": str(svc / "data"),
        "svc_files_path": str(svc / "files"),
        "svc_static_path": str(svc / "static"),
        "svc_var_path": str(svc / "var"),
        "svc_pid_file": str(svc / "PID"),
        "svc_run": plan.svc_run,
        "svc_user": plan.svc_user,
        "svc_group": plan.svc_group,
        "exports": dict(plan.exports),
        "exposes": resolved_exposes(plan, cfg),
        "deps": [dep_json(d, plan.dep_paths.get(d)) for d in plan.deps],
    }


def local_member(
    *,
    plan: Plan,
    sg: ServiceGroup,
    member_id: str,
    sys_info: Mapping[str, Any],
    exported: Mapping[str, Any],
    initialized: bool,
    group: CensusGroup | None,
) -> CensusMember:
    """This member as a census member now: fresh cfg and sys, election flags from `group`."""
    in_census = group.me if group is not None else None
    status = group.election_status if group is not None else ElectionState.NONE
    update = group.update_election_status if group is not None else ElectionState.NONE
    leader_id = group.leader_id if group is not None else None
    update_leader_id = group.update_leader_id if group is not None else None
    sys = rumor_sys(sys_info)
    if in_census is not None:  # the observed gossip address, as the ring sees us
        sys.update(
            {k: in_census.sys[k] for k in ("gossip_ip", "gossip_port") if k in in_census.sys}
        )
    finished = status is ElectionState.FINISHED
    update_finished = update is ElectionState.FINISHED
    return CensusMember(
        member_id=member_id,
        service=sg.service,
        group=sg.group,
        org=sg.org,
        pkg=PkgIdent(plan.origin, plan.name, plan.version, plan.release),
        sys=sys,
        cfg=dict(exported),
        initialized=initialized,
        persistent=in_census.persistent
        if in_census is not None
        else bool(sys_info.get("permanent")),
        alive=True,
        leader=finished and leader_id == member_id,
        follower=finished and leader_id != member_id,
        update_leader=update_finished and update_leader_id == member_id,
        update_follower=update_finished and update_leader_id != member_id,
        election_is_running=status is ElectionState.IN_PROGRESS,
        election_is_no_quorum=status is ElectionState.NO_QUORUM,
        election_is_finished=finished,
        update_election_is_running=update is ElectionState.IN_PROGRESS,
        update_election_is_no_quorum=update is ElectionState.NO_QUORUM,
        update_election_is_finished=update_finished,
    )


def svc_context(sg: ServiceGroup, group: CensusGroup | None, me: CensusMember) -> dict[str, Any]:
    members = [
        m for m in (group.members if group is not None else ()) if m.member_id != me.member_id
    ]
    members.append(me)
    members.sort(key=lambda m: m.member_id)
    leader = group.leader if group is not None else None
    if leader is not None and leader.member_id == me.member_id:
        leader = me
    update_leader = group.update_leader if group is not None else None
    first = leader or next((m for m in members if m.active), None)
    status = group.election_status if group is not None else ElectionState.NONE
    update = group.update_election_status if group is not None else ElectionState.NONE
    return {
        "service": sg.service,
        "group": sg.group,
        "org": sg.org,
        "me": member_json(me),
        "members": [member_json(m) for m in members],
        "leader": member_json(leader) if leader is not None else None,
        "first": member_json(first) if first is not None else None,
        "update_leader": member_json(update_leader) if update_leader is not None else None,
        "election_is_running": status is ElectionState.IN_PROGRESS,
        "election_is_no_quorum": status is ElectionState.NO_QUORUM,
        "election_is_finished": status is ElectionState.FINISHED,
        "update_election_is_running": update is ElectionState.IN_PROGRESS,
        "update_election_is_no_quorum": update is ElectionState.NO_QUORUM,
        "update_election_is_finished": update is ElectionState.FINISHED,
    }


def bind_group_context(group: CensusGroup) -> dict[str, Any]:
    first = group.first
    leader = group.leader
    return {
        "first": member_json(first) if first is not None else None,
        "leader": member_json(leader) if leader is not None else None,
        "members": [member_json(m) for m in group.members],
    }


def bind_context(spec: ServiceSpec, census: Census) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bind in spec.binds:
        group = census.group(bind.service_group)
        if group is not None:
            out[bind.name] = bind_group_context(group)
        else:  # relaxed mode may render before the group exists: an empty bind, not a missing one
            out[bind.name] = {"first": None, "leader": None, "members": []}
    return out


def binds_not_ready(plan: Plan, spec: ServiceSpec, census: Census) -> str | None:
    """Why a strict-mode service must wait for its binds, or None when it may run.

    Strict: every bind the plan requires (pkg_binds) is given in the spec, its group exists with an
    active member, and that member exports every key the plan requires. Optional binds that are
    given are checked the same way only when their group exists. Relaxed: always None.
    """
    if spec.binding_mode is BindingMode.RELAXED:
        return None
    for name, keys in plan.binds.items():
        bind = spec.bind(name)
        if bind is None:
            return f"required bind {name!r} is not given (--bind {name}:<svc>.<group>)"
        reason = _group_not_ready(name, bind.service_group, keys, census, required=True)
        if reason:
            return reason
    for name, keys in plan.binds_optional.items():
        bind = spec.bind(name)
        if bind is not None:
            reason = _group_not_ready(name, bind.service_group, keys, census, required=False)
            if reason:
                return reason
    return None


def _group_not_ready(
    name: str, sg: str, keys: tuple[str, ...], census: Census, *, required: bool
) -> str | None:
    group = census.group(sg)
    if group is None or not group.members:
        return f"waiting for bind {name!r}: group {sg} has no members yet" if required else None
    active = group.leader or next(iter(group.active_members), None)
    if active is None:
        return f"waiting for bind {name!r}: group {sg} has no alive member"
    missing = [k for k in keys if k not in active.cfg]
    if missing:
        return f"waiting for bind {name!r}: group {sg} does not export {', '.join(missing)}"
    return None


def render_context(
    *,
    plan: Plan,
    spec: ServiceSpec,
    sys_info: Mapping[str, Any],
    member_id: str,
    cfg: Mapping[str, Any],
    exported: Mapping[str, Any],
    census: Census,
    initialized: bool = False,
) -> dict[str, Any]:
    """The whole template context of one service (see the module docstring)."""
    sg = spec.service_group(plan.name)
    group = census.group(sg)
    me = local_member(
        plan=plan,
        sg=sg,
        member_id=member_id,
        sys_info=sys_info,
        exported=exported,
        initialized=initialized,
        group=group,
    )
    return {
        "sys": sys_context(sys_info, member_id),
        "pkg": pkg_context(plan, cfg),
        "cfg": plain_data(cfg),
        "svc": svc_context(sg, group, me),
        "bind": bind_context(spec, census),
    }
