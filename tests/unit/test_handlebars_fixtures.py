"""Plan-style fixture templates render to their expected files; properties over arbitrary text;
compile-once/render-many speed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.service.handlebars import compile_template


# Contexts shaped like the Supervisor's render context (sys, pkg, cfg, svc, bind).
def member(n: int, *, alive: bool = True, leader: bool = False, port: int = 6379) -> dict[str, Any]:
    return {
        "member_id": f"{n:032x}",
        "alive": alive,
        "leader": leader,
        "follower": not leader,
        "sys": {"ip": f"10.0.0.{n}", "hostname": f"host-{n}"},
        "cfg": {"port": port},
    }


def redis_context(*, follower: bool) -> dict[str, Any]:
    leader = member(1, leader=True)
    me = member(2) | {"follower": follower}
    return {
        "sys": {"ip": "10.0.0.2", "hostname": "host-2"},
        "pkg": {"svc_data_path": "/hab/svc/redis/data", "ident": "core/redis/7.2.4/20240101000000"},
        "cfg": {
            "bind": "0.0.0.0",
            "port": 6379,
            "tcp-backlog": 511,
            "timeout": 0,
            "tcp-keepalive": 300,
            "requirepass": "",
            "protected-mode": False,
            "databases": 16,
            "save": [{"seconds": 900, "changes": 1}, {"seconds": 300, "changes": 10}],
            "dbfilename": "dump.rdb",
            "replicaof": "",
            "loglevel": "NOTICE",
            "rename-command": {"FLUSHALL": "", "CONFIG": "cfg-9f2c"},
        },
        "svc": {"me": me, "leader": leader, "members": [leader, me]},
    }


def nginx_context(*, backends: list[dict[str, Any]] | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "pkg": {
            "svc_var_path": "/hab/svc/nginx/var",
            "svc_static_path": "/hab/svc/nginx/static",
            "deps": [
                {"ident": "core/glibc/2.35/20230101000000", "path": "/hab/pkgs/core/glibc/2.35/1"},
                {"ident": "core/nginx/1.25.4/20240202000000"},
            ],
        },
        "cfg": {
            "worker_processes": 2,
            "events": {"worker_connections": 1024},
            "http": {
                "sendfile": True,
                "keepalive_timeout": 65,
                "listen": {"port": 8080},
                "server_names": ["example.com", "www.example.com"],
                "locations": [{"path": "/", "proxy": False}, {"path": "/api/", "proxy": True}],
            },
        },
        "bind": {},
    }
    if backends is not None:
        ctx["bind"]["backend"] = {"members": backends}
    return ctx


def run_hook_context() -> dict[str, Any]:
    members = [  # a list, as Habitat's census gives it
        member(1) | {"leader": False},
        member(2, alive=False),
        member(3, leader=True),
    ]
    return {
        "sys": {"ip": "10.0.0.1"},
        "pkg": {
            "ident": "acme/app/1.0.0/20240301000000",
            "path": "/hab/pkgs/acme/app/1.0.0/20240301000000",
            "svc_config_path": "/hab/svc/app/config",
            "deps": [
                {"origin": "core", "name": "openjdk", "version": "17.0.2", "release": "20230505"},
            ],
        },
        "cfg": {
            "debug": True,
            "port": 8443,
            "extra-path": ["/opt/a/bin", "/opt/b/bin"],
            "app": {"threads": 4, "tags": ["x", "y"], "tls": {"enabled": False}},
            "flags": {"workers": 8, "mode": "fast"},
        },
        "svc": {"service": "my-app", "members": members},
    }


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "templates"


def render_fixture(name: str, ctx: dict[str, Any]) -> str:
    return compile_template((FIXTURES / name).read_text(), name).render(ctx, strict=False)


@pytest.mark.parametrize(
    ("template", "ctx", "expected"),
    [
        ("redis.config.hbs", redis_context(follower=True), "redis.config.follower.expected"),
        ("redis.config.hbs", redis_context(follower=False), "redis.config.leader.expected"),
        (
            "nginx.conf.hbs",
            nginx_context(
                backends=[member(5, port=8000), member(6, alive=False), member(7, port=8001)]
            ),
            "nginx.conf.expected",
        ),
        ("run.hook.hbs", run_hook_context(), "run.hook.expected"),
    ],
    ids=["redis-follower", "redis-leader", "nginx", "run-hook"],
)
def test_fixture_renders_to_expected_file(
    template: str, ctx: dict[str, Any], expected: str
) -> None:
    assert render_fixture(template, ctx) == (FIXTURES / expected).read_text()


def test_nginx_upstream_falls_back_only_when_the_backend_list_is_empty() -> None:
    """Habitat's eachAlive renders its else branch for an empty list, and nothing at all when
    every member is dead."""
    out = render_fixture("nginx.conf.hbs", nginx_context(backends=[]))
    assert "    upstream backend {\n        server 127.0.0.1:65535 down;\n    }\n" in out
    out = render_fixture("nginx.conf.hbs", nginx_context(backends=[member(6, alive=False)]))
    assert "    upstream backend {\n    }\n" in out


def test_nginx_without_bind_has_no_upstream_and_no_leftover_lines() -> None:
    out = render_fixture("nginx.conf.hbs", nginx_context(backends=None))
    assert "upstream" not in out
    assert "keepalive_timeout 65;\n\n\n    server {\n" in out  # the two blank lines of the source


def test_fixtures_render_in_strict_mode_when_context_is_complete() -> None:
    src = (FIXTURES / "run.hook.hbs").read_text()
    assert compile_template(src).render(run_hook_context(), strict=True) == (
        (FIXTURES / "run.hook.expected").read_text()
    )


NO_BRACES = st.text().filter(lambda s: "{{" not in s)
NO_BACKSLASH = st.text(alphabet=st.sampled_from("{}~#/!^&ab \n\t.")).filter(lambda s: "\\" not in s)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(NO_BRACES)
def test_text_without_open_braces_renders_to_itself(text: str) -> None:
    assert compile_template(text).render({}) == text


@settings(derandomize=True, max_examples=300, deadline=None)
@given(NO_BACKSLASH)
def test_escaping_every_open_brace_pair_round_trips(text: str) -> None:
    escaped = text.replace("{{", "\\{{")
    assert compile_template(escaped).render({}) == text


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text())
def test_any_string_value_is_emitted_verbatim(value: str) -> None:
    ctx = {"v": value}
    assert compile_template("{{v}}|{{{v}}}|{{&v}}").render(ctx) == f"{value}|{value}|{value}"


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text(alphabet=" \t\r\n"), st.text(alphabet=" \t\r\n"), st.text())
def test_tildes_strip_all_surrounding_whitespace(left: str, right: str, value: str) -> None:
    assert compile_template(f"{left}{{{{~v~}}}}{right}").render({"v": value}) == value


JSON_VALUES = st.recursive(
    # serde_json's domain: i64/u64 integers, finite floats (others become floats / null)
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_to_json_round_trips(value: Any) -> None:
    assert json.loads(compile_template("{{toJson v}}").render({"v": value})) == value


def _big_template() -> str:
    lines = ["# generated config"]
    lines += [f"key_{i} = {{{{cfg.section.key-{i}}}}}" for i in range(40)]
    block = [
        "{{#eachAlive bind.backend.members as |m|}}",
        "server {{m.sys.ip}}:{{m.cfg.port}}{{#if @first}} primary{{/if}};",
        "{{/eachAlive}}",
        "{{#each cfg.locations as |loc i|}}",
        "location {{loc.path}} {",
        "  {{#if loc.proxy}}",
        "  proxy_pass http://{{@root.cfg.upstream}}/{{i}};",
        "  {{else}}",
        "  root {{@root.pkg.svc_static_path}}{{loc.path}};",
        "  {{/if}}",
        "}",
        "{{/each}}",
        'names {{strJoin cfg.names ","}} {{toUppercase cfg.upstream}}',
        "",
    ]
    while len(lines) + len(block) <= 200:
        lines += block
    lines += [f"# padding {i}" for i in range(200 - len(lines))]
    return "\n".join(lines) + "\n"


def test_render_of_a_200_line_template_with_loops_is_fast() -> None:
    source = _big_template()
    assert source.count("\n") == 200
    members = [member(n, alive=n % 4 != 0) for n in range(1, 9)]
    ctx = {
        "cfg": {
            "section": {f"key-{i}": i for i in range(40)},
            "locations": [{"path": f"/p{i}", "proxy": i % 2 == 0} for i in range(4)],
            "names": ["a", "b", "c"],
            "upstream": "backend",
        },
        "pkg": {"svc_static_path": "/static"},
        "bind": {"backend": {"members": members}},
    }
    tpl = compile_template(source)
    first = tpl.render(ctx)
    assert first.count("server 10.0.0.") == 6 * source.count("{{#eachAlive")
    runs = 100
    start = time.perf_counter()
    for _ in range(runs):
        assert tpl.render(ctx) == first
    per_render = (time.perf_counter() - start) / runs
    # ~0.3-0.5 ms on a laptop core; the bound is loose because the machine is shared.
    assert per_render < 0.01, f"{per_render * 1000:.2f} ms per render"
