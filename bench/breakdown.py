"""Where the milliseconds and megabytes go: pure summaries of `-X importtime`, py-spy's collapsed
stacks and tracemalloc statistics, grouped by top-level package.

A "package" is the first component of a module name (``aiohttp.web`` -> ``aiohttp``), except for
pysup itself, which is split one level further (``pysup.gateway``, ``pysup.butterfly``...) because
that is where the later work decides what to import lazily. Files map to packages through their
path (``.../site-packages/aiohttp/web.py`` -> ``aiohttp``; ``.../lib/python3.11/asyncio/...`` ->
``asyncio``; anything under ``<frozen ...>`` -> ``<frozen>``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")
SPLIT_DEEPER = ("pysup",)
"""Packages reported one level deeper (their sub-packages are what the later work optimises)."""


def package_of_module(name: str) -> str:
    parts = name.split(".")
    if parts[0] in SPLIT_DEEPER and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def is_stdlib(package: str) -> bool:
    return package.split(".")[0].lstrip("_") in sys.stdlib_module_names or package in (
        "<frozen>",
        "builtins",
    )


def package_of_file(path: str) -> str:
    """The package a source file belongs to (see the module docstring)."""
    if path.startswith("<frozen"):
        return "<frozen>"
    if path.startswith("<"):
        return path  # <string>, <stdin>: code that has no file
    p = path.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in p:
            rel = p.split(marker, 1)[1]
            return _package_of_rel(rel)
    m = re.search(r"/lib/python\d+\.\d+/(.+)$", p)
    if m:
        return _package_of_rel(m.group(1))
    m = re.search(r"(?:^|/)(pysup|bench|tests)/(.+)$", p)
    if m:
        return _package_of_rel(f"{m.group(1)}/{m.group(2)}")
    if not p.startswith("/"):
        return _package_of_rel(p)  # py-spy shortens paths to their sys.path entry
    return "<other>"


def _package_of_rel(rel: str) -> str:
    parts = rel.split("/")
    first = parts[0]
    if first.endswith(".py"):
        return first[:-3]
    if first.endswith(".so") or ".cpython-" in first:
        return first.split(".")[0]
    if first in SPLIT_DEEPER and len(parts) > 1:
        sub = parts[1][:-3] if parts[1].endswith(".py") else parts[1]
        return f"{first}.{sub}" if sub != "__init__" else first
    return first


# --- -X importtime -----------------------------------------------------------------------------


@dataclass
class ImportNode:
    module: str
    self_us: int
    cumulative_us: int
    depth: int
    children: list[ImportNode] = field(default_factory=list)


def parse_importtime(text: str) -> list[ImportNode]:
    """The import tree from `python -X importtime` stderr (other lines are ignored).

    CPython prints a module after everything it imported, indented two spaces per level, so a
    line's children are the deeper lines just before it."""
    roots: list[ImportNode] = []
    pending: list[ImportNode] = []
    for line in text.splitlines():
        m = _IMPORT_LINE.match(line)
        if not m:
            continue
        node = ImportNode(m.group(4), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2)
        while pending and pending[-1].depth > node.depth:
            child = pending.pop()
            node.children.insert(0, child)
        pending.append(node)
    roots.extend(pending)
    return roots


def walk(nodes: Iterable[ImportNode]) -> Iterable[ImportNode]:
    for n in nodes:
        yield n
        yield from walk(n.children)


def importtime_by_package(roots: Iterable[ImportNode]) -> dict[str, float]:
    """Self import time (ms) summed per package, largest first."""
    out: dict[str, float] = {}
    for n in walk(roots):
        pkg = package_of_module(n.module)
        out[pkg] = out.get(pkg, 0.0) + n.self_us / 1000.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def pulled_in_by(
    roots: Iterable[ImportNode], owner_prefix: str = "pysup"
) -> dict[str, dict[str, float]]:
    """For each `owner_prefix` module, the third-party and stdlib packages first imported under
    it (its subtree minus nested owner modules), with their cumulative ms: which of our modules
    brings aiohttp, the Kubernetes client, the template engine..."""
    out: dict[str, dict[str, float]] = {}

    def visit(node: ImportNode, owner: str | None) -> None:
        is_owner = node.module == owner_prefix or node.module.startswith(owner_prefix + ".")
        if is_owner:
            owner = node.module
        elif owner is not None:
            pkg = package_of_module(node.module)
            got = out.setdefault(owner, {})
            got[pkg] = got.get(pkg, 0.0) + node.cumulative_us / 1000.0
            return  # its whole subtree is charged to it
        for c in node.children:
            visit(c, owner)

    for r in roots:
        visit(r, None)
    return {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in out.items()}


def total_import_ms(roots: Iterable[ImportNode]) -> float:
    return sum(n.cumulative_us for n in roots) / 1000.0


# --- py-spy collapsed stacks --------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _frame_key(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


def summarize_collapsed(text: str, top: int = 15) -> dict[str, object]:
    """Self and inclusive shares of the sampled time from py-spy's ``--format raw`` output
    (``frame;frame;...;leaf COUNT`` per line): the leaf functions, the functions on the stack,
    and the package of the leaf."""
    total = 0
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    pkg: dict[str, int] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [f for f in stack.split(";") if f]
        keys = [_frame_key(f) for f in frames]
        # The first frame is py-spy's thread/process label when it has no "(file)".
        keys = [x for x in keys if x[1]]
        if not keys:
            continue
        func, file = keys[-1]
        leaf = f"{func} ({file})"
        self_t[leaf] = self_t.get(leaf, 0) + k
        p = package_of_file(file)
        pkg[p] = pkg.get(p, 0) + k
        for f, fl in set(keys):
            name = f"{f} ({fl})"
            incl[name] = incl.get(name, 0) + k

    def share(d: Mapping[str, int]) -> list[tuple[str, float]]:
        items = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(v / total, 4)) for name, v in items] if total else []

    return {
        "samples": total,
        "self": share(self_t),
        "inclusive": share(incl),
        "package": share(pkg),
    }


# --- tracemalloc --------------------------------------------------------------------------------


def group_sizes_by_package(sizes: Iterable[tuple[str, int]]) -> dict[str, float]:
    """(file, bytes) pairs -> MiB per package, largest first."""
    out: dict[str, float] = {}
    for path, size in sizes:
        p = package_of_file(path)
        out[p] = out.get(p, 0.0) + size / 2**20
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
