"""The start-up / profile breakdown parsers: `-X importtime` trees, py-spy collapsed stacks and
file-to-package attribution give the right shares (hand-made inputs in the tools' formats)."""

from __future__ import annotations

import pytest

from bench import breakdown as b

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:        50 |        150 | io
import time:       300 |        300 |       multidict._abc
import time:      2000 |       2300 |     multidict
import time:      5000 |       7300 |   aiohttp
import time:       700 |        700 |   pysup.metrics
import time:      1000 |       9000 | pysup.daemon
{"event": "not an import line"}
"""


def test_importtime_tree_puts_children_under_the_line_that_follows_them() -> None:
    roots = b.parse_importtime(IMPORTTIME)
    assert [r.module for r in roots] == ["io", "pysup.daemon"]
    daemon = roots[1]
    assert [c.module for c in daemon.children] == ["aiohttp", "pysup.metrics"]
    aiohttp = daemon.children[0]
    assert [c.module for c in aiohttp.children] == ["multidict"]
    assert [c.module for c in aiohttp.children[0].children] == ["multidict._abc"]
    assert b.total_import_ms(roots) == pytest.approx(9.15)
    assert sum(1 for _ in b.walk(roots)) == 7


def test_importtime_self_time_by_package_splits_pysup_by_subpackage() -> None:
    by_pkg = b.importtime_by_package(b.parse_importtime(IMPORTTIME))
    assert by_pkg == pytest.approx(
        {
            "aiohttp": 5.0,
            "multidict": 2.3,
            "pysup.daemon": 1.0,
            "pysup.metrics": 0.7,
            "_io": 0.1,
            "io": 0.05,
        }
    )
    assert next(iter(by_pkg)) == "aiohttp"  # largest first


def test_pulled_in_by_charges_a_whole_foreign_subtree_to_the_pysup_module_importing_it() -> None:
    pulled = b.pulled_in_by(b.parse_importtime(IMPORTTIME))
    assert pulled == {"pysup.daemon": {"aiohttp": pytest.approx(7.3)}}


@pytest.mark.parametrize(
    ("path", "package"),
    [
        ("/x/.venv/lib/python3.11/site-packages/aiohttp/web.py", "aiohttp"),
        (
            "/x/.venv/lib/python3.11/site-packages/yaml/_yaml.cpython-311-x86_64-linux-gnu.so",
            "yaml",
        ),
        ("/x/.venv/lib/python3.11/site-packages/six.py", "six"),
        ("/usr/lib/python3.11/asyncio/events.py", "asyncio"),
        ("/usr/lib/python3.11/json/__init__.py", "json"),
        ("/work/wt/a/pysup/butterfly/core.py", "pysup.butterfly"),
        ("/work/wt/a/pysup/daemon.py", "pysup.daemon"),
        ("/work/wt/a/pysup/__init__.py", "pysup"),
        ("<frozen importlib._bootstrap>", "<frozen>"),
        ("<string>", "<string>"),
        ("json/encoder.py", "json"),  # py-spy's shortened paths
        ("pysup/gateway/http.py", "pysup.gateway"),
    ],
)
def test_files_map_to_packages(path: str, package: str) -> None:
    assert b.package_of_file(path) == package


def test_collapsed_stacks_give_self_inclusive_and_package_shares() -> None:
    text = (
        "<module> (<string>:6);f (<string>:5);dumps (json/__init__.py:231);"
        "iterencode (json/encoder.py:258) 6\n"
        "<module> (<string>:6);f (<string>:5);dumps (json/__init__.py:231);"
        "iterencode (json/encoder.py:216) 2\n"
        "<module> (<string>:6);f (<string>:5) 2\n"
        "garbage line\n"
    )
    s = b.summarize_collapsed(text)
    assert s["samples"] == 10
    # Lines of one function are one entry: 6 + 2 samples.
    assert s["self"] == [("iterencode (json/encoder.py)", 0.8), ("f (<string>)", 0.2)]
    assert ("dumps (json/__init__.py)", 0.8) in s["inclusive"]
    assert ("f (<string>)", 1.0) in s["inclusive"]
    assert s["package"] == [("json", 0.8), ("<string>", 0.2)]


def test_tracemalloc_sizes_are_summed_per_package_in_mib() -> None:
    got = b.group_sizes_by_package(
        [
            ("/v/site-packages/aiohttp/web.py", 2 * 2**20),
            ("/v/site-packages/aiohttp/client.py", 2**20),
            ("/usr/lib/python3.11/asyncio/base_events.py", 2**19),
        ]
    )
    assert got == {"aiohttp": 3.0, "asyncio": 0.5}
    assert b.is_stdlib("asyncio") and not b.is_stdlib("aiohttp")
