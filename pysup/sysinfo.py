"""This host as the services see it: the ``sys`` of templates and Service rumors."""

from __future__ import annotations

import socket
from typing import Any

from pysup import __version__
from pysup.settings import Settings


def detect_ip(settings: Settings) -> str:
    """``--sys-ip-address``, else the gossip listen address when it is one host, else what the
    hostname resolves to (127.0.0.1 when it resolves to nothing)."""
    if settings.sys_ip_address:
        return settings.sys_ip_address
    host = settings.gossip_addr()[0]
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def sys_info(settings: Settings, sys_ip: str) -> dict[str, Any]:
    s = settings
    gossip_ip, gossip_port = s.gossip_addr()
    http_ip, http_port = s.http_addr()
    ctl_ip, ctl_port = s.ctl_addr()
    return {
        "ip": sys_ip,
        "hostname": socket.gethostname(),
        "gossip_ip": gossip_ip,
        "gossip_port": gossip_port,
        "http_gateway_ip": http_ip,
        "http_gateway_port": http_port,
        "ctl_gateway_ip": ctl_ip,
        "ctl_gateway_port": ctl_port,
        "permanent": s.permanent_peer,
        "version": __version__,
    }
