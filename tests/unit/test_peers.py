"""Seeds: HOST[:PORT] parsing, resolution that skips bad names, and the --peer-watch-file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysup.peers import PeerWatchFile, resolve
from pysup.settings import SettingsError, parse_peer


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("super", ("super", 9638)),
        ("10.0.0.1", ("10.0.0.1", 9638)),
        ("10.0.0.1:9700", ("10.0.0.1", 9700)),
        ("  seed.example:1  ", ("seed.example", 1)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::1]", ("::1", 9638)),
    ],
)
def test_parse_peer(spec: str, expected: tuple[str, int]) -> None:
    assert parse_peer(spec) == expected


def test_parse_peer_default_port_is_the_callers() -> None:
    assert parse_peer("seed", default_port=7000) == ("seed", 7000)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty peer"),
        ("   ", "empty peer"),
        ("seed:x", "peer 'seed:x': port must be a number"),
        ("seed:0", "peer 'seed:0': port out of range"),
        ("seed:65536", "port out of range"),
    ],
)
def test_parse_peer_errors(spec: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_peer(spec)


async def test_resolve_skips_bad_specs_and_deduplicates() -> None:
    addrs = await resolve(
        [
            "127.0.0.1:4000",
            "seed:notaport",  # invalid: logged and skipped
            "bad..name",  # does not resolve (empty label): logged and skipped
            "localhost:4000",  # the same address again
            "127.0.0.2",  # the default port
        ],
        default_port=5000,
    )
    assert addrs == [("127.0.0.1", 4000), ("127.0.0.2", 5000)]


async def test_resolve_nothing() -> None:
    assert await resolve([]) == []


class TestPeerWatchFile:
    def write(self, path: Path, text: str, stamp_ns: int) -> None:
        """Write and set an explicit mtime, so changes are seen without waiting for the clock."""
        path.write_text(text)
        os.utime(path, ns=(stamp_ns, stamp_ns))

    def test_missing_file_is_no_peers(self, tmp_path: Path) -> None:
        w = PeerWatchFile(str(tmp_path / "peers"))
        assert w.poll() is False and w.peers == []

    def test_lines_comments_and_blanks(self, tmp_path: Path) -> None:
        path = tmp_path / "peers"
        self.write(path, "# seeds\n10.0.0.1\n\n  10.0.0.2:9700  # second\n#10.0.0.3\n", 10**18)
        w = PeerWatchFile(str(path))
        assert w.poll() is True
        assert w.peers == ["10.0.0.1", "10.0.0.2:9700"]
        assert w.poll() is False  # unchanged file: not re-read

    def test_changes_are_seen_and_rewrites_with_the_same_peers_are_not_changes(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "peers"
        self.write(path, "", 10**18)
        w = PeerWatchFile(str(path))
        assert w.poll() is False and w.peers == []  # empty: no seeds yet
        self.write(path, "10.0.0.1\n", 10**18 + 1)
        assert w.poll() is True and w.peers == ["10.0.0.1"]
        self.write(path, "10.0.0.1\n# touched\n", 10**18 + 2)
        assert w.poll() is False and w.peers == ["10.0.0.1"]
        self.write(path, "10.0.0.9\n", 10**18 + 3)  # same size, new mtime
        assert w.poll() is True and w.peers == ["10.0.0.9"]

    def test_removed_file_drops_the_peers_once(self, tmp_path: Path) -> None:
        path = tmp_path / "peers"
        self.write(path, "10.0.0.1\n", 10**18)
        w = PeerWatchFile(str(path))
        assert w.poll() is True
        path.unlink()
        assert w.poll() is True and w.peers == []
        assert w.poll() is False

    def test_unreadable_file_keeps_the_last_peers(self, tmp_path: Path) -> None:
        path = tmp_path / "peers"
        self.write(path, "10.0.0.1\n", 10**18)
        w = PeerWatchFile(str(path))
        assert w.poll() is True
        path.unlink()
        path.mkdir()  # stat works, reading fails
        assert w.poll() is False and w.peers == ["10.0.0.1"]
