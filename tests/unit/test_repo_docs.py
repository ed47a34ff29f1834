"""The repository's documents stand on their own: every link and every repository path they name
exists in a clone, and the README names exactly the Debian packages the set-up scripts install."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]
SCRIPTS = sorted(p for p in (REPO / "scripts").iterdir() if p.is_file())
TOP = ("docs", "scripts", ".ci")
"""Code spans naming a path under these are references the reader follows (a document to read,
a script to run); other paths in prose may be examples (`plans/web`) or relative to a plan."""
REPO_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(re.escape(t) for t in TOP)})/[\w./-]*\w)")
GENERATED = ("bench/results/",)
"""Paths that a run creates (benchmark output), not part of a clone."""


def _named_paths(text: str) -> set[str]:
    """Relative link targets, and references under TOP in code: inline spans (one line each)
    and fenced blocks (every line)."""
    links = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text))
    links = {link for link in links if not re.match(r"[a-z]+://", link)}
    code: list[str] = []
    prose: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose += re.findall(r"`([^`]+)`", line)
    paths = {m for chunk in code + prose for m in REPO_PATH.findall(chunk)}
    return links | paths


def test_every_path_the_documents_name_exists_in_the_repository() -> None:
    missing = []
    for doc in DOCS:
        for path in _named_paths(doc.read_text()):
            if path.startswith(GENERATED) or any(c in path for c in "*<>"):
                continue
            found = (doc.parent / path).exists() or (REPO / path).exists()
            if ".." in Path(path).parts or not found:
                missing.append(f"{doc.relative_to(REPO)}: {path}")
    assert missing == []


def test_no_document_or_script_points_outside_the_repository() -> None:
    outside = [
        str(f.relative_to(REPO))
        for f in [*DOCS, *SCRIPTS]
        if re.search(r"\.\./shared|TEST-ENVIRONMENT\.md|DESIGN\.md", f.read_text())
    ]
    assert outside == []


def _packages(var: str) -> list[str]:
    text = (REPO / "scripts" / "lib.sh").read_text()
    m = re.search(rf'^{var}="([^"]*)"', text, re.M)
    assert m, f"{var} not in scripts/lib.sh"
    return m.group(1).split()


def test_the_readme_names_exactly_the_debian_packages_make_test_installs() -> None:
    names = ("TEST_PACKAGES", "PODMAN_PACKAGES", "BROWSER_PACKAGES")
    wanted = list(dict.fromkeys(p for name in names for p in _packages(name)))
    readme = (REPO / "README.md").read_text()
    m = re.search(r"Debian packages `([^`]+)`", readme)
    assert m, "the README's table of what `make test` installs"
    assert m.group(1).split() == wanted
    guide = (REPO / "docs" / "test-environment.md").read_text()
    assert " ".join(wanted) in " ".join(guide.split())


def _recipe(target: str) -> str:
    """The prerequisites and commands of a Makefile target."""
    text = (REPO / "Makefile").read_text()
    m = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", text, re.M)
    assert m, f"no `{target}` target in the Makefile"
    return m.group(1) + "\n" + m.group(2)


def test_test_quick_installs_nothing_outside_the_venv_and_ci_runs_the_full_check() -> None:
    quick = _recipe("test-quick")
    assert "test-deps" not in quick and "setup-podman" not in quick
    for tier in ("tests/unit", "tests/sim", "tests/integration"):
        assert tier in quick
    assert "tests/netns" not in quick and "tests/container" not in quick
    full = _recipe("test")
    assert "test-deps" in full and "scripts/check" in full
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M)
