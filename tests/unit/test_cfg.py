"""Config layering: deep-merge laws, env/user/gossip layers, dotted lookups, exports, 64 KiB."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.service.cfg import (
    MAX_GOSSIP_CONFIG,
    ConfigError,
    deep_merge,
    env_var_name,
    exported_cfg,
    layer_config,
    lookup_path,
    missing_exports,
    parse_env_config,
    parse_gossip_config,
)

# Deterministic (the project's unit tests are): a fixed derivation of examples, no shared database.
DET = settings(derandomize=True, database=None, deadline=None)

# --- strategies -----------------------------------------------------------------------------------

scalars = st.one_of(
    st.integers(-1000, 1000),
    st.booleans(),
    st.text(alphabet="abc xyz-", max_size=5),
    st.lists(st.integers(0, 9), max_size=3),
)
keys = st.sampled_from(["a", "b", "c", "tcp-backlog", "http"])

# Any config: a key may hold a table in one layer and a scalar in another.
configs = st.recursive(
    st.dictionaries(keys, scalars, max_size=4),
    lambda children: st.dictionaries(keys, st.one_of(scalars, children), max_size=4),
    max_leaves=12,
)


def shaped(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """Configs that agree on shape: keys s* always hold scalars, keys t* always hold tables."""
    leaves = st.dictionaries(st.sampled_from(["s0", "s1", "s2"]), scalars, max_size=3)
    if depth == 0:
        return leaves
    tables = st.dictionaries(st.sampled_from(["t0", "t1"]), shaped(depth - 1), max_size=2)
    return st.builds(lambda a, b: {**a, **b}, leaves, tables)


shaped_configs = shaped(3)


def leaf_paths(cfg: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in cfg.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.extend(leaf_paths(v, path))
        else:
            out.append((path, v))
    return out


# --- deep_merge laws ------------------------------------------------------------------------------


@DET
@given(configs)
def test_empty_overlay_and_empty_base_are_identities(a: dict[str, Any]) -> None:
    assert deep_merge(a) == a
    assert deep_merge(a, {}) == a
    assert deep_merge({}, a) == a


@DET
@given(configs)
def test_merge_is_idempotent(a: dict[str, Any]) -> None:
    assert deep_merge(a, a) == a


@DET
@given(shaped_configs, shaped_configs, shaped_configs)
def test_merge_is_associative_for_configs_of_one_shape(
    a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]
) -> None:
    left = deep_merge(deep_merge(a, b), c)
    assert left == deep_merge(a, deep_merge(b, c))
    assert left == deep_merge(a, b, c)


def test_merge_is_not_associative_when_a_layer_changes_a_table_into_a_scalar() -> None:
    """Documents the one exception to associativity (the same as Habitat): order decides."""
    a, b, c = {"k": {"x": 1}}, {"k": 5}, {"k": {"y": 2}}
    assert deep_merge(deep_merge(a, b), c) == {"k": {"y": 2}}
    assert deep_merge(a, deep_merge(b, c)) == {"k": {"x": 1, "y": 2}}


@DET
@given(configs, configs)
def test_later_layer_wins_at_every_leaf_it_sets(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = deep_merge(a, b)
    for path, value in leaf_paths(b):
        if value == {}:  # an empty table sets nothing below it
            assert isinstance(lookup_path(merged, path), dict)
        else:
            assert lookup_path(merged, path) == value


@DET
@given(configs, configs)
def test_earlier_keys_survive_unless_overridden(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = deep_merge(a, b)
    for path, value in leaf_paths(a):
        parts = path.split(".")
        # the leaf survives unless b sets its path, or a prefix of it to a non-table
        node: Any = b
        overridden = False
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
            if i == len(parts) - 1 or not isinstance(node, dict):
                overridden = True
                break
        if not overridden:
            assert lookup_path(merged, path) == value


@DET
@given(configs, configs)
def test_merge_never_mutates_inputs_nor_shares_state_with_them(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    merged = deep_merge(a, b)
    assert (a, b) == (a0, b0)
    _scribble(merged)
    assert (a, b) == (a0, b0)


def _scribble(node: dict[str, Any]) -> None:
    for k, v in list(node.items()):
        if isinstance(v, dict):
            _scribble(v)
            v["__new__"] = 1
        elif isinstance(v, list):
            v.append(99)
        else:
            node[k] = "changed"


def test_nested_tables_merge_and_non_tables_are_replaced_whole() -> None:
    base = {"http": {"listen": "0.0.0.0", "port": 80}, "tags": ["a", "b"]}
    over = {"http": {"port": 8080}, "tags": ["c"]}
    assert deep_merge(base, over) == {"http": {"listen": "0.0.0.0", "port": 8080}, "tags": ["c"]}


# --- env layer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pkg", "var"),
    [("redis", "HAB_REDIS"), ("habsup", "HAB_HABSUP"), ("my-app", "HAB_MY_APP")],
)
def test_env_var_name(pkg: str, var: str) -> None:
    assert env_var_name(pkg) == var


def test_env_config_toml() -> None:
    assert parse_env_config('[http]\nport = 9000\nmsg = "x"') == {
        "http": {"port": 9000, "msg": "x"}
    }


def test_env_config_json_when_it_starts_with_a_brace() -> None:
    assert parse_env_config('  {"http": {"port": 9000}}') == {"http": {"port": 9000}}


def test_empty_env_config_is_an_empty_layer() -> None:
    assert parse_env_config("") == {}
    assert parse_env_config("  \n") == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("port = = 1", "not valid TOML"),
        ("a = 1\nb = = 2", "line 2"),
        ('{"port": }', "not valid JSON"),
        ('{"a": {"b": null}}', "null at a.b"),
    ],
)
def test_bad_env_config_says_why(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_env_config(text, "HAB_X")


def test_env_json_that_is_not_an_object_is_rejected() -> None:
    # "[1]" does not start with "{" so it is read as TOML and fails there; force JSON with an
    # object-looking prefix that is really an array of objects:
    with pytest.raises(ConfigError):
        parse_env_config("[1, 2]")


# --- layering -------------------------------------------------------------------------------------


def test_layers_apply_in_habitat_order() -> None:
    default = {"http": {"listen": "0.0.0.0", "port": 1}, "a": "default", "b": "default"}
    env = '{"http": {"port": 2}, "a": "env", "c": "env"}'
    user = {"http": {"port": 3}, "b": "user", "c": "user"}
    gossip = {"http": {"port": 4}}
    cfg = layer_config(default, env, user, gossip)
    assert cfg == {
        "http": {"listen": "0.0.0.0", "port": 4},
        "a": "env",
        "b": "user",
        "c": "user",
    }
    assert layer_config(default, env, user)["http"]["port"] == 3
    assert layer_config(default, env)["http"]["port"] == 2
    assert layer_config(default) == default


def test_a_bad_env_layer_is_an_error_not_silently_ignored() -> None:
    with pytest.raises(ConfigError):
        layer_config({"a": 1}, "a = ")


# --- lookups and exports --------------------------------------------------------------------------

CFG = {"http": {"port": 8080, "tls": {"on": False}}, "tcp-backlog": 511, "name": "x"}


def test_lookup_path() -> None:
    assert lookup_path(CFG, "http.port") == 8080
    assert lookup_path(CFG, "http.tls.on") is False
    assert lookup_path(CFG, "tcp-backlog") == 511
    assert lookup_path(CFG, "http") == {"port": 8080, "tls": {"on": False}}


@pytest.mark.parametrize("path", ["nope", "http.nope", "name.length", "http.port.x"])
def test_lookup_of_missing_path_raises_or_gives_default(path: str) -> None:
    with pytest.raises(KeyError):
        lookup_path(CFG, path)
    assert lookup_path(CFG, path, None) is None


@pytest.mark.parametrize("path", ["", ".a", "a..b", "a."])
def test_malformed_path_is_rejected(path: str) -> None:
    with pytest.raises(ValueError):
        lookup_path(CFG, path)


def test_exported_cfg_picks_export_keys_and_omits_missing_paths() -> None:
    exports = {"port": "http.port", "backlog": "tcp-backlog", "tls": "http.tls", "gone": "x.y"}
    out = exported_cfg(CFG, exports)
    assert out == {"port": 8080, "backlog": 511, "tls": {"on": False}}
    assert missing_exports(CFG, exports) == ("gone",)
    out["tls"]["on"] = True
    assert CFG["http"]["tls"] == {"on": False}  # type: ignore[index]


def test_exported_cfg_of_no_exports_is_empty() -> None:
    assert exported_cfg(CFG, {}) == {}
    assert missing_exports(CFG, {}) == ()


# --- gossip layer ---------------------------------------------------------------------------------


def _toml_of_size(size: int) -> bytes:
    head = b'pad = "'
    data = head + b"x" * (size - len(head) - 1) + b'"'
    assert len(data) == size
    return data


def test_gossip_config_at_the_limit_is_accepted() -> None:
    assert parse_gossip_config(_toml_of_size(MAX_GOSSIP_CONFIG))["pad"].startswith("xxx")
    assert MAX_GOSSIP_CONFIG == 65536


def test_gossip_config_over_the_limit_is_rejected() -> None:
    with pytest.raises(ConfigError, match="65537 bytes, over the 65536 byte limit"):
        parse_gossip_config(_toml_of_size(MAX_GOSSIP_CONFIG + 1))


@pytest.mark.parametrize(
    ("data", "reason"), [(b"\xff\xfe = 1", "not UTF-8"), (b"a = [1,", "not valid TOML")]
)
def test_bad_gossip_config_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_gossip_config(data)


def test_gossip_config_parses_tables() -> None:
    assert parse_gossip_config(b"[http]\nport = 9\n") == {"http": {"port": 9}}
