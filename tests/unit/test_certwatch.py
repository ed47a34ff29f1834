"""Certificate rotation without restart: the watcher rebuilds the server context when the files
change, the server's first context hands new handshakes to the newest one (SNI callback), and
unusable new files keep the old context with one logged reason. Manual clock, in-memory TLS."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.crypto.certwatch import CertWatcher, stamp
from pysup.crypto.tls import ServerTlsFiles, TlsConfigError, client_context, server_context
from pysup.testing.certs import HandshakeFailed, Issued, TestCA, memory_handshake


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def install(src: Issued, files: ServerTlsFiles) -> None:
    """Rotate like cert tools and Kubernetes do: new files renamed over the old ones."""
    for a, b in ((src.certificate, files.certificate), (src.key, files.key)):
        tmp = b.with_name(b.name + ".new")
        shutil.copyfile(a, tmp)
        os.replace(tmp, b)


def served_serial(server: ssl.SSLContext, ca: TestCA, client: Issued | None = None) -> int:
    cctx = client_context(
        ca.certificate, client.certificate if client else None, client.key if client else None
    )
    _, c = memory_handshake(server, cctx)
    peer = c.getpeercert()
    assert peer
    return int(str(peer["serialNumber"]), 16)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TestCA, ServerTlsFiles, Issued]:
    ca = TestCA(tmp_path / "ca")
    live = tmp_path / "live"
    live.mkdir()
    files = ServerTlsFiles(live / "tls.crt", live / "tls.key")
    first = ca.issue("first")
    install(first, files)
    return ca, files, first


def test_rotation_is_served_by_the_servers_first_context(
    setup: tuple[TestCA, ServerTlsFiles, Issued],
) -> None:
    ca, files, first = setup
    clock = Clock()
    watcher = CertWatcher(lambda: server_context(files), files.paths, clock=clock)
    server_ctx = watcher.context  # what a gateway hands its server, once
    assert served_serial(server_ctx, ca) == first.serial

    second = ca.issue("second")
    install(second, files)
    assert served_serial(server_ctx, ca) == first.serial  # not due yet: checks are rate-limited
    clock.now += 1.0
    assert served_serial(server_ctx, ca) == second.serial
    assert watcher.reloads == 1
    assert watcher.context is not server_ctx


def test_poll_returns_fresh_context_only_on_change(
    setup: tuple[TestCA, ServerTlsFiles, Issued],
) -> None:
    ca, files, _ = setup
    watcher = CertWatcher(lambda: server_context(files), files.paths, clock=Clock())
    assert watcher.poll() is None
    second = ca.issue("second")
    install(second, files)
    fresh = watcher.poll()
    assert fresh is not None and fresh is watcher.context
    assert served_serial(fresh, ca) == second.serial
    assert watcher.poll() is None


def test_in_place_rewrite_seen_by_mtime(setup: tuple[TestCA, ServerTlsFiles, Issued]) -> None:
    ca, files, _ = setup
    watcher = CertWatcher(lambda: server_context(files), files.paths, clock=Clock())
    second = ca.issue("second")
    inode = os.stat(files.certificate).st_ino
    files.certificate.write_bytes(second.certificate.read_bytes())
    files.key.write_bytes(second.key.read_bytes())
    st = os.stat(files.certificate)
    os.utime(files.certificate, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert os.stat(files.certificate).st_ino == inode
    assert watcher.poll() is not None
    assert served_serial(watcher.context, ca) == second.serial


def test_invalid_new_files_keep_old_context_and_log_once(
    setup: tuple[TestCA, ServerTlsFiles, Issued],
) -> None:
    ca, files, first = setup
    clock = Clock()
    watcher = CertWatcher(lambda: server_context(files), files.paths, clock=clock)
    server_ctx = watcher.context
    half = ca.issue("half")
    tmp = files.certificate.with_name("c.new")
    shutil.copyfile(half.certificate, tmp)
    os.replace(tmp, files.certificate)  # new certificate, old key: a half-finished rotation
    with capture_logs() as logs:
        assert watcher.poll() is None
        assert watcher.poll() is None  # same broken files: not retried, not logged again
    assert [e["event"] for e in logs] == ["tls.reload_failed"]
    assert "does not belong to the certificate" in logs[0]["reason"]
    assert watcher.failures == 1
    assert watcher.last_error and "does not belong" in watcher.last_error
    clock.now += 5
    assert served_serial(server_ctx, ca) == first.serial  # still the old, good pair

    install(half, files)  # the key lands: now the pair is complete
    clock.now += 5
    assert served_serial(server_ctx, ca) == half.serial
    assert watcher.last_error is None


def test_deleted_files_keep_old_context(setup: tuple[TestCA, ServerTlsFiles, Issued]) -> None:
    ca, files, first = setup
    watcher = CertWatcher(lambda: server_context(files), files.paths, clock=Clock())
    files.key.unlink()
    assert watcher.poll() is None
    assert watcher.last_error and "no such file" in watcher.last_error
    assert served_serial(watcher.context, ca) == first.serial


def test_client_ca_rotation_changes_who_is_accepted(tmp_path: Path) -> None:
    ca, other = TestCA(tmp_path / "a"), TestCA(tmp_path / "b", name="other CA")
    server = ca.issue("server")
    client_a, client_b = ca.issue("ca", client=True), other.issue("cb", client=True)
    client_ca = tmp_path / "client-ca.pem"
    shutil.copyfile(ca.certificate, client_ca)
    files = ServerTlsFiles(server.certificate, server.key, client_ca)
    clock = Clock()
    watcher = CertWatcher(lambda: server_context(files), files.paths, clock=clock)
    server_ctx = watcher.context
    served_serial(server_ctx, ca, client_a)
    with pytest.raises(HandshakeFailed):
        served_serial(server_ctx, ca, client_b)
    tmp = tmp_path / "new-ca.pem"
    shutil.copyfile(other.certificate, tmp)
    os.replace(tmp, client_ca)
    clock.now += 1
    served_serial(server_ctx, ca, client_b)
    with pytest.raises(HandshakeFailed):
        served_serial(server_ctx, ca, client_a)
    with pytest.raises(HandshakeFailed):  # still required after rotation
        served_serial(server_ctx, ca)


def test_first_build_error_propagates(tmp_path: Path) -> None:
    files = ServerTlsFiles(tmp_path / "missing.crt", tmp_path / "missing.key")
    with pytest.raises(TlsConfigError, match=r"missing\.crt: no such file"):
        CertWatcher(lambda: server_context(files), files.paths)


def test_stamp_marks_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    a, b = stamp([tmp_path / "a", tmp_path / "b"])
    assert a.size == 1 and a.inode is not None
    assert b.inode is None and b.size is None
