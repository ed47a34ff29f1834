"""The dashboard's files: all shipped in the package, all served, none fetched from elsewhere,
and no ring data ever inserted as HTML."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from aiohttp import web

from pysup.gateway.static import ASSETS, PREFIX, UI_OPEN_PATHS, add_ui_routes, load_assets

ROOT = Path(__file__).parents[2]
STATIC = ROOT / "pysup" / "gateway" / "static"


def test_every_static_file_is_an_asset_and_package_data() -> None:
    files = {p.name for p in STATIC.iterdir() if p.is_file() and p.suffix != ".py"}
    assert files == set(ASSETS)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["pysup.gateway.static"]
    assert all(any(fnmatch.fnmatch(name, g) for g in globs) for name in files)
    assert all(load_assets().values())


def test_every_route_of_the_page_is_open() -> None:
    """The browser loads the page and its files without the token (it cannot send it when it
    navigates); the open set is exactly the page's routes, nothing else."""
    app = web.Application()
    add_ui_routes(app)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert paths == UI_OPEN_PATHS
    assert {PREFIX, f"{PREFIX}/", f"{PREFIX}/ui.js", f"{PREFIX}/state.js"} <= paths


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """Offline and air-gapped: every reference is a relative path to a shipped file."""
    html = (STATIC / "ui.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, "no references found: the pattern is wrong"
    for ref in refs:
        assert ref in ASSETS or ref == "data:,", ref
    for name in ("ui.js", "state.js", "ui.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://|@import|url\(", text), name
        for module in re.findall(r'from "([^"]+)"', text):
            assert module.removeprefix("./") in ASSETS, module


def test_ring_data_is_never_inserted_as_html() -> None:
    for name in ("ui.js", "state.js"):
        text = (STATIC / name).read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", text)
