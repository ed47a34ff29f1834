"""The supervisor's settings: flags > environment > TOML config file > defaults.

Flag spellings and environment variables are Habitat's (`hab sup run`), so compose files and
manifests written for Habitat work with only the image name changed. pysup's own additions use
`PYSUP_` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pysup.butterfly.config import PRESETS
from pysup.butterfly.validate import is_ip_literal
from pysup.service.pkgpaths import PkgPathError, parse_mapping


class SettingsError(Exception):
    """A setting that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Settings:
    listen_gossip: str = "0.0.0.0:9638"
    """IP:PORT for SWIM datagrams and rumor streams (UDP and TCP on one port)."""
    listen_http: str = "0.0.0.0:9631"
    """IP:PORT of the HTTP gateway (`/services`, `/healthz`, ...)."""
    listen_ctl: str = "127.0.0.1:9632"
    """IP:PORT of the control gateway (loopback by default: it accepts commands)."""
    peers: tuple[str, ...] = ()
    """Seeds as HOST[:PORT]; hostnames are resolved again on every join attempt."""
    peer_watch_file: str | None = None
    """A file of IP[:PORT] lines, re-read when it changes (conflicts with peers)."""
    permanent_peer: bool = False
    """Others keep probing us even after confirming us dead (for seeds)."""
    ring: str | None = None
    """Ring key name: the newest `<ring>-<rev>.sym.key` in the key cache encrypts gossip."""
    ring_key: str | None = None
    """The ring key file's whole text (HAB_RING_KEY), instead of the key cache."""
    key_cache: str | None = None
    """Directory of ring keys (default: HAB_CACHE_KEY_PATH, /hab/cache/keys, ~/.pysup/keys)."""
    http_disable: bool = False
    sys_ip_address: str | None = None
    """The IP others should use for us in templates (`sys.ip`); detected when unset."""
    state_dir: str = "/hab/sup/default"
    """Where MEMBER_ID, INCARNATION, rumors, CTL_SECRET and service dirs live."""
    gossip_profile: str = "lan"
    """Timing preset: lan, lan-fast, wan, local or habitat."""
    udp_backend: str = "asyncio-dgram"
    """Datagram back end: `asyncio-dgram` (the project's chosen library) or `asyncio` (asyncio's
    own endpoint: about a third less CPU per idle member, which matters when hosting hundreds of
    members in one process; see bench/README.md)."""
    readiness: str = "api"
    """What `/readyz` waits for: api (the gateway answers), ring (joined), services (all up)."""
    json_logging: bool = False
    verbose: bool = False
    plans: tuple[str, ...] = ()
    """Plan directories to load at start (PYSUP_DEFAULT_PLANS when none are given)."""
    group: str = "default"
    topology: str = "standalone"
    strategy: str = "none"
    binds: tuple[str, ...] = ()
    binding_mode: str = "strict"
    health_check_interval_s: float = 30.0
    shutdown_timeout_s: float | None = None
    """Overrides the plan's pkg_shutdown_timeout_sec when set."""
    hook_timeout_s: float = 60.0
    """Longest a non-run hook may run before it is killed and reported."""
    state_save_interval_s: float = 30.0
    """How often the rumor store and incarnation are written to disk."""
    departure_timeout_s: float | None = None
    """Seconds a Confirmed member is kept before it becomes Departed, and a Departed member's
    service rumors before they are garbage-collected; overrides the gossip profile's (3 days).
    Shorter frees memory sooner after churn; too short forgets members that are only partitioned."""
    peer_discovery: str | None = None
    """`kubernetes` (EndpointSlices, then pods) or `dns:NAME` (A records of a headless service)."""
    kubernetes_service: str | None = None
    """The Service whose EndpointSlices list our peers (kubernetes discovery and mode)."""
    kubernetes_selector: str | None = None
    """Label selector for pods when EndpointSlices cannot be read."""
    mode: str = "gossip"
    """`gossip` (a SWIM ring) or `kubernetes` (census, config and leader from the API)."""
    pkg_paths: Mapping[str, str] = field(default_factory=dict)
    """Where plans' dependencies live on this host: ORIGIN/NAME -> prefix, what
    ``{{pkgPathFor "ORIGIN/NAME"}}`` renders (``PYSUP_PKG_PATHS="core/curl=/usr ..."`` or a
    ``[pkg_paths]`` table). Beats every other way of finding a package (service/pkgpaths.py)."""
    pkg_path_fallback: bool = True
    """Resolve a dependency that is neither mapped nor installed under /hab/pkgs from a namesake
    program on PATH (``core/curl`` -> ``/usr`` when ``/usr/bin/curl`` exists). On: real plans'
    hooks call ``{{pkgPathFor "core/curl"}}/bin/curl``, which this makes work on ordinary hosts;
    off gives Habitat's ``/hab/pkgs/...`` paths exactly."""
    orphans: str = "adopt"
    """What a restarted supervisor does with a run process its killed predecessor left running
    (``PID.json`` proves which): ``adopt`` keeps it serving with no downtime (Habitat's launcher
    keeps services across a supervisor crash too); ``stop`` restarts it fresh (new environment,
    binary and log pipes) at the cost of a restart."""
    tls_key: str | None = None
    """PEM private key of the HTTP gateway (Habitat's ``--key``): with ``tls_certs``, the gateway
    serves HTTPS only (probes too: ``scheme: HTTPS``). Re-read when it changes on disk."""
    tls_certs: str | None = None
    """PEM certificate chain of the HTTP gateway (Habitat's ``--certs``), server first."""
    tls_ca_certs: str | None = None
    """PEM CA certificates (Habitat's ``--ca-certs``): clients of the HTTP gateway must present a
    certificate one of them signed. Off by default: probes and curl need no certificate."""
    ctl_server_certificate: str | None = None
    """The control gateway's certificate: a file, or a directory whose newest
    ``ctl-gateway-<rev>.crt.pem`` is taken; "" (the flag without a value) means
    ``<key cache>/ctl``. With ``ctl_server_key``, the control gateway speaks only TLS."""
    ctl_server_key: str | None = None
    """The control gateway's private key: a file or directory as for the certificate."""
    ctl_client_ca_certificate: str | None = None
    """CA certificates control clients' certificates must be signed by (a file or directory as
    above); unset: clients prove only the shared secret (inside TLS)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def gossip_addr(self) -> tuple[str, int]:
        return parse_listen(self.listen_gossip, 9638, "listen-gossip")

    def http_addr(self) -> tuple[str, int]:
        return parse_listen(self.listen_http, 9631, "listen-http")

    def ctl_addr(self) -> tuple[str, int]:
        return parse_listen(self.listen_ctl, 9632, "listen-ctl")

    def validate(self) -> None:
        self.gossip_addr()
        # Members gossip each other's addresses, which must be IP literals (a name would be
        # resolved inside the event loop by whoever sends to it): the codec refuses names.
        if self.sys_ip_address is not None and not is_ip_literal(self.sys_ip_address):
            raise SettingsError(
                f"--sys-ip-address {self.sys_ip_address!r}: must be an IP address, not a name"
            )
        self.http_addr()
        self.ctl_addr()
        if self.gossip_profile not in PRESETS:
            raise SettingsError(
                f"--gossip-profile {self.gossip_profile!r}: expected one of {', '.join(PRESETS)}"
            )
        if self.udp_backend not in ("asyncio-dgram", "asyncio"):
            raise SettingsError(
                f"--udp-backend {self.udp_backend!r}: expected asyncio-dgram or asyncio"
            )
        if self.readiness not in ("api", "ring", "services"):
            raise SettingsError(f"--readiness {self.readiness!r}: expected api, ring or services")
        if self.topology not in ("standalone", "leader"):
            raise SettingsError(f"--topology {self.topology!r}: expected standalone or leader")
        if self.strategy not in ("none", "at-once", "rolling"):
            raise SettingsError(f"--strategy {self.strategy!r}: expected none, at-once or rolling")
        if self.binding_mode not in ("strict", "relaxed"):
            raise SettingsError(f"--binding-mode {self.binding_mode!r}: expected strict or relaxed")
        if self.orphans not in ("adopt", "stop"):
            raise SettingsError(f"--orphans {self.orphans!r}: expected adopt or stop")
        if self.mode not in ("gossip", "kubernetes"):
            raise SettingsError(f"--mode {self.mode!r}: expected gossip or kubernetes")
        pd = self.peer_discovery
        if pd is not None and pd != "kubernetes" and not (pd.startswith("dns:") and len(pd) > 4):
            raise SettingsError(f"--peer-discovery {pd!r}: expected kubernetes or dns:NAME")
        if self.departure_timeout_s is not None and self.departure_timeout_s <= 0:
            raise SettingsError("--departure-timeout must be a positive number of seconds")
        if self.peers and self.peer_watch_file:
            raise SettingsError("--peer and --peer-watch-file cannot be used together")
        for p in self.peers:
            parse_peer(p)
        _check_tls_pair(
            "--certs", self.tls_certs, "--key", self.tls_key, "--ca-certs", self.tls_ca_certs
        )
        _check_tls_pair(
            "--ctl-server-certificate",
            self.ctl_server_certificate,
            "--ctl-server-key",
            self.ctl_server_key,
            "--ctl-client-ca-certificate",
            self.ctl_client_ca_certificate,
        )


def _check_tls_pair(
    cert_flag: str, cert: str | None, key_flag: str, key: str | None, ca_flag: str, ca: str | None
) -> None:
    """A certificate needs its key (and the reverse); a client CA needs both."""
    if (cert is None) != (key is None):
        given, missing = (cert_flag, key_flag) if key is None else (key_flag, cert_flag)
        raise SettingsError(f"{given} needs {missing} too")
    if ca is not None and cert is None:
        raise SettingsError(f"{ca_flag} needs {cert_flag} and {key_flag}")


def parse_listen(value: str, default_port: int, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(default_port)
    try:
        n = int(port)
    except ValueError:
        raise SettingsError(f"--{what} {value!r}: port must be a number") from None
    if not 0 <= n <= 65535:
        raise SettingsError(f"--{what} {value!r}: port out of range")
    return (host or "0.0.0.0", n)


def parse_peer(value: str, default_port: int = 9638) -> tuple[str, int]:
    value = value.strip()
    if not value:
        raise SettingsError("empty peer")
    host, sep, port = value.rpartition(":")
    if not sep or "]" in port:
        return (value.strip("[]"), default_port)
    try:
        n = int(port)
    except ValueError:
        raise SettingsError(f"peer {value!r}: port must be a number") from None
    if not 0 < n <= 65535:
        raise SettingsError(f"peer {value!r}: port out of range")
    return (host.strip("[]"), n)


# Environment variables (Habitat's where Habitat has one).
ENV: dict[str, str] = {
    "listen_gossip": "HAB_LISTEN_GOSSIP",
    "listen_http": "HAB_LISTEN_HTTP",
    "listen_ctl": "HAB_LISTEN_CTL",
    "ring": "HAB_RING",
    "ring_key": "HAB_RING_KEY",
    "key_cache": "HAB_CACHE_KEY_PATH",
    "state_dir": "PYSUP_STATE_DIR",
    "gossip_profile": "PYSUP_GOSSIP_PROFILE",
    "readiness": "PYSUP_READINESS",
    "udp_backend": "PYSUP_UDP_BACKEND",
    "peers": "PYSUP_PEERS",
    "sys_ip_address": "HAB_SYS_IP",
    "plans": "PYSUP_DEFAULT_PLANS",
    "peer_discovery": "PYSUP_PEER_DISCOVERY",
    "kubernetes_service": "PYSUP_KUBERNETES_SERVICE",
    "kubernetes_selector": "PYSUP_KUBERNETES_SELECTOR",
    "mode": "PYSUP_MODE",
    "departure_timeout_s": "PYSUP_DEPARTURE_TIMEOUT",
    "pkg_paths": "PYSUP_PKG_PATHS",
    "orphans": "PYSUP_ORPHANS",
    "tls_key": "PYSUP_TLS_KEY",
    "tls_certs": "PYSUP_TLS_CERTS",
    "tls_ca_certs": "PYSUP_TLS_CA_CERTS",
    "ctl_server_certificate": "HAB_CTL_SERVER_CERTIFICATE",
    "ctl_server_key": "HAB_CTL_SERVER_KEY",
    "ctl_client_ca_certificate": "HAB_CTL_CLIENT_CA_CERTIFICATE",
}
_BOOL_ENV: dict[str, str] = {
    "json_logging": "PYSUP_JSON_LOGGING",
    "pkg_path_fallback": "PYSUP_PKG_PATH_FALLBACK",
}


def env_var(name: str) -> str | None:
    """The environment variable that sets setting `name`, if there is one (for `--help`)."""
    return ENV.get(name) or _BOOL_ENV.get(name)


def _coerce(name: str, value: Any, source: str) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = str(kinds[name])
    if "Mapping" in kind:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = " ".join(value)  # repeated --pkg-path flags
        if not isinstance(value, str | dict):
            raise SettingsError(f"{source}: {name} must be a table")
        try:
            return parse_mapping(value)
        except PkgPathError as e:
            raise SettingsError(f"{source}: {e}") from None
    if "tuple" in kind:
        if isinstance(value, str):
            return tuple(v for v in (x.strip() for x in value.replace(",", " ").split()) if v)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise SettingsError(f"{source}: {name} must be a list of strings")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
            "",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise SettingsError(f"{source}: {name} must be true or false")
    if "float" in kind:
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{source}: {name} must be a number") from None
    if not isinstance(value, str):
        raise SettingsError(f"{source}: {name} must be a string")
    return value


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Merge flags (only those the user gave), environment, and the TOML file over defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)} - {"extra"}
    path = config_file or env.get("PYSUP_CONFIG")
    if path:
        import tomllib  # only with a config file (issue 18: ~0.2 MiB at every start otherwise)

        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as e:
            raise SettingsError(f"config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"config file {path}: {e}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name == "peer":
                name = "peers"
            if name not in names:
                raise SettingsError(f"config file {path}: unknown setting {key!r}")
            values[name] = _coerce(name, value, f"config file {path}")
    for name, var in ENV.items():
        if env.get(var):
            values[name] = _coerce(name, env[var], var)
    for name, var in _BOOL_ENV.items():
        if var in env:
            values[name] = _coerce(name, env[var], var)
    for name, value in flags.items():
        if value is not None and name in names:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    settings = Settings(**values)
    settings.validate()
    return settings
