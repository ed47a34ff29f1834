"""Settings: flags > environment > TOML file > defaults, clear errors, Habitat's flag spellings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import pysup.daemon
import pysup.logs
from pysup import cli
from pysup.settings import Settings, SettingsError, load_settings, parse_listen


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pysup.toml"
    path.write_text(text)
    return str(path)


# --- precedence ---------------------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    s = load_settings({}, env={})
    assert s == Settings()
    assert s.gossip_addr() == ("0.0.0.0", 9638)
    assert s.http_addr() == ("0.0.0.0", 9631)
    assert s.ctl_addr() == ("127.0.0.1", 9632)
    assert (s.gossip_profile, s.readiness, s.topology) == ("lan", "api", "standalone")


def test_each_layer_overrides_the_one_below_field_by_field(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'gossip-profile = "wan"\nreadiness = "ring"\ngroup = "from-toml"\n'
        'listen-http = "127.0.0.1:1000"\n',
    )
    env = {"PYSUP_GOSSIP_PROFILE": "local", "PYSUP_READINESS": "services"}
    flags = {"readiness": "api", "group": None}  # None = flag not given
    s = load_settings(flags, env=env, config_file=path)
    assert s.readiness == "api"  # flag > env > file
    assert s.gossip_profile == "local"  # env > file
    assert s.group == "from-toml"  # file > default; an absent flag does not reset it
    assert s.http_addr() == ("127.0.0.1", 1000)
    assert s.topology == "standalone"  # default


def test_config_file_from_pysup_config_and_flag_file_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text('group = "env-file"\n')
    flag_file = write_toml(tmp_path, 'group = "flag-file"\n')
    assert load_settings({}, env={"PYSUP_CONFIG": str(env_file)}).group == "env-file"
    s = load_settings({}, env={"PYSUP_CONFIG": str(env_file)}, config_file=flag_file)
    assert s.group == "flag-file"


def test_habitat_environment_variables() -> None:
    env = {
        "HAB_LISTEN_GOSSIP": "10.0.0.5:9000",
        "HAB_LISTEN_HTTP": "10.0.0.5",
        "HAB_LISTEN_CTL": "127.0.0.1:7000",
        "HAB_RING": "prod",
        "HAB_CACHE_KEY_PATH": "/keys",
        "HAB_SYS_IP": "10.0.0.5",
        "PYSUP_PEERS": "a.example:1, b.example  c.example",
        "PYSUP_STATE_DIR": "/var/lib/pysup",
    }
    s = load_settings({}, env=env)
    assert s.gossip_addr() == ("10.0.0.5", 9000)
    assert s.http_addr() == ("10.0.0.5", 9631)  # no port: the default one
    assert s.ctl_addr() == ("127.0.0.1", 7000)
    assert (s.ring, s.key_cache, s.sys_ip_address) == ("prod", "/keys", "10.0.0.5")
    assert s.peers == ("a.example:1", "b.example", "c.example")
    assert s.state_dir == "/var/lib/pysup"


def test_empty_environment_variables_are_ignored(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'ring = "from-toml"\n')
    assert load_settings({}, env={"HAB_RING": ""}, config_file=path).ring == "from-toml"


def test_booleans_by_layer(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "json-logging = true\npermanent-peer = true\n")
    assert load_settings({}, env={}, config_file=path).json_logging is True
    s = load_settings({}, env={"PYSUP_JSON_LOGGING": "off"}, config_file=path)
    assert s.json_logging is False and s.permanent_peer is True  # env false beats file true
    s = load_settings({"json_logging": True}, env={"PYSUP_JSON_LOGGING": "0"}, config_file=path)
    assert s.json_logging is True


def test_toml_peer_alias_lists_and_numbers(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'peer = ["10.0.0.1", "10.0.0.2:9700"]\nhealth-check-interval-s = 5\n'
        "shutdown_timeout_s = 2.5\n",
    )
    s = load_settings({}, env={}, config_file=path)
    assert s.peers == ("10.0.0.1", "10.0.0.2:9700")
    assert s.health_check_interval_s == 5.0 and s.shutdown_timeout_s == 2.5


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"listen_gossip": "1.2.3.4:gossip"}, {}, "--listen-gossip '1.2.3.4:gossip': port must"),
        ({"listen_http": "0.0.0.0:70000"}, {}, "--listen-http '0.0.0.0:70000': port out of range"),
        ({}, {"HAB_LISTEN_CTL": "x:-1"}, "--listen-ctl 'x:-1': port out of range"),
        ({"gossip_profile": "fast"}, {}, "--gossip-profile 'fast': expected one of lan, wan"),
        ({}, {"PYSUP_READINESS": "later"}, "--readiness 'later': expected api, ring or services"),
        ({"topology": "ring"}, {}, "--topology 'ring': expected standalone or leader"),
        ({"strategy": "yolo"}, {}, "--strategy 'yolo': expected none, at-once or rolling"),
        ({"binding_mode": "lax"}, {}, "--binding-mode 'lax': expected strict or relaxed"),
        (
            {"peers": ["a"], "peer_watch_file": "/f"},
            {},
            "--peer and --peer-watch-file cannot be used together",
        ),
        ({"peers": ["seed:port"]}, {}, "peer 'seed:port': port must be a number"),
        ({"peers": ["seed:0"]}, {}, "peer 'seed:0': port out of range"),
        ({}, {"PYSUP_JSON_LOGGING": "maybe"}, "PYSUP_JSON_LOGGING: json_logging must be true"),
        ({"health_check_interval_s": "soon"}, {}, "health_check_interval_s must be a number"),
    ],
)
def test_bad_values_raise_a_settings_error_naming_the_setting(
    flags: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(flags, env=env)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('bogus = "x"\n', "unknown setting 'bogus'"),
        ("readiness = \n", "config file"),
        ("peers = [1, 2]\n", "peers must be a list of strings"),
        ("json-logging = 3\n", "json_logging must be true or false"),
        ("group = 5\n", "group must be a string"),
        ('health-check-interval-s = "x"\n', "health_check_interval_s must be a number"),
    ],
)
def test_bad_config_files_name_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(SettingsError) as err:
        load_settings({}, env={}, config_file=path)
    assert message in str(err.value) and path in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match="No such file"):
        load_settings({}, env={}, config_file=missing)


def test_parse_listen_defaults() -> None:
    assert parse_listen(":9000", 1, "x") == ("0.0.0.0", 9000)
    assert parse_listen("10.1.2.3", 9638, "x") == ("10.1.2.3", 9638)


# --- the command line (the real argparse -> settings path of `pysup run`) ---------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HAB_/PYSUP_ variables from the developer's shell leak into a CLI test."""
    for name in list(os.environ):
        if name.startswith(("HAB_", "PYSUP_")):
            monkeypatch.delenv(name)
    return monkeypatch


def run_settings(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Settings:
    """What `pysup run ARGV` would start the Supervisor with (nothing is started)."""
    seen: list[Settings] = []

    class FakeSupervisor:
        def __init__(self, settings: Settings) -> None:
            seen.append(settings)

        async def run(self) -> int:
            return 0

    monkeypatch.setattr(pysup.daemon, "Supervisor", FakeSupervisor)
    monkeypatch.setattr(pysup.logs, "configure_logging", lambda *a, **k: None)
    assert cli.main(["run", *argv]) == 0
    return seen[0]


def test_habitat_seed_flags_parse(clean_env: pytest.MonkeyPatch) -> None:
    s = run_settings(clean_env, ["--topology", "leader", "--peer", "super"])
    assert s.topology == "leader" and s.peers == ("super",)


def test_habitat_kubernetes_manifest_flags_parse(clean_env: pytest.MonkeyPatch) -> None:
    argv = ["--peer", "habitat-supervisor.ns.svc.cluster.local", "--listen-gossip", "10.42.0.7"]
    argv += ["-I", "-D", "--channel", "stable", "--auto-update", "-r", "prod"]
    argv += ["--strategy", "at-once", "--bind", "router:builder-router.default", "-i", "10"]
    s = run_settings(clean_env, argv)
    assert s.peers == ("habitat-supervisor.ns.svc.cluster.local",)
    assert s.gossip_addr() == ("10.42.0.7", 9638)
    assert s.permanent_peer is True and s.http_disable is True
    assert (s.ring, s.strategy, s.binds) == ("prod", "at-once", ("router:builder-router.default",))
    assert s.health_check_interval_s == 10.0


def test_flags_beat_environment_beat_file_on_the_command_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_toml(tmp_path, 'listen-gossip = "127.0.0.1:1"\nreadiness = "ring"\n')
    s = run_settings(clean_env, ["--config", path])
    assert s.gossip_addr() == ("127.0.0.1", 1) and s.readiness == "ring"
    clean_env.setenv("HAB_LISTEN_GOSSIP", "127.0.0.2:2")
    s = run_settings(clean_env, ["--config", path, "--readiness", "api"])
    assert s.gossip_addr() == ("127.0.0.2", 2) and s.readiness == "api"
    s = run_settings(clean_env, ["--listen-gossip", "127.0.0.3:3", "--config", path])
    assert s.gossip_addr() == ("127.0.0.3", 3)


def test_bad_flag_value_is_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--listen-gossip", "0.0.0.0:huge"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "pysup: --listen-gossip '0.0.0.0:huge': port must be a number\n"


def test_departure_timeout_flag_env_and_file_reach_the_gossip_config(tmp_path: Path) -> None:
    """`--departure-timeout` (PYSUP_DEPARTURE_TIMEOUT, `departure-timeout` in TOML) replaces the
    profile's 3 days in the config the core runs with; unset keeps the profile's."""
    flag = load_settings({"departure_timeout_s": 60.0}, env={})
    assert pysup.daemon.Supervisor(flag, env={}).gossip_config.departure_timeout_s == 60.0
    env = load_settings({}, env={"PYSUP_DEPARTURE_TIMEOUT": "90"})
    assert env.departure_timeout_s == 90.0
    conf = tmp_path / "sup.toml"
    conf.write_text("departure-timeout-s = 120\n")
    assert load_settings({}, env={}, config_file=str(conf)).departure_timeout_s == 120.0
    default = load_settings({}, env={})
    assert pysup.daemon.Supervisor(default, env={}).gossip_config.departure_timeout_s == 3 * 86400
    with pytest.raises(SettingsError, match="departure-timeout"):
        load_settings({"departure_timeout_s": 0.0}, env={})
    args = cli.build_parser().parse_args(["run", "--departure-timeout", "30"])
    assert args.departure_timeout_s == 30.0


def _run_settings(*argv: str, env: dict[str, str] | None = None) -> Settings:
    args = cli.build_parser().parse_args(["run", *argv])
    return load_settings(vars(args), env=env or {})


def test_pkg_path_flag_is_repeatable_and_beats_the_environment() -> None:
    s = _run_settings(
        "--pkg-path",
        "core/curl=/usr",
        "--pkg-path",
        "core/jdk=/opt/jdk",
        env={"PYSUP_PKG_PATHS": "core/curl=/elsewhere"},
    )
    assert dict(s.pkg_paths) == {"core/curl": "/usr", "core/jdk": "/opt/jdk"}
    with pytest.raises(SettingsError, match="ORIGIN/NAME"):
        _run_settings("--pkg-path", "curl=/usr")


def test_orphans_flag_environment_and_refusal() -> None:
    assert _run_settings().orphans == "adopt"
    assert _run_settings("--orphans", "stop").orphans == "stop"
    assert _run_settings(env={"PYSUP_ORPHANS": "stop"}).orphans == "stop"
    with pytest.raises(SettingsError, match="--orphans 'later'"):
        load_settings({}, env={"PYSUP_ORPHANS": "later"})
