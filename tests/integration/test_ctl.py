"""The control gateway over a real TCP socket, against a small fake supervisor that has a real
RumorStore, StateDir, Metrics and (for svc ops) a real ServiceManager running a real process.

Proves: the secret is required first and wrong ones are refused, counted and cut off; config and
file versions must grow; size, TOML and file-name rules; depart publishes; sup term stops; svc
load persists the spec and status reports it; the CLI prints one line and exits 1 on errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    DepartureRumor,
    Rumor,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
)
from pysup.butterfly.rumors import RumorStore
from pysup.census import empty_census
from pysup.ctl_client import CtlClient, CtlClientError
from pysup.gateway import ctl
from pysup.gateway.ctl_proto import (
    HEADER,
    MAX_BODY,
    Auth,
    ConfigApply,
    FileUpload,
    SupDepart,
    SupTerm,
    SvcLoad,
    SvcStatus,
    SvcStop,
    SvcUnload,
    decode_body,
    encode_frame,
)
from pysup.metrics import Metrics
from pysup.service.manager import ServiceManager
from pysup.service.saved import load_saved_specs
from pysup.service.spec import DesiredState
from pysup.settings import Settings
from pysup.statedir import StateDir
from tests.util import async_wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ME = "a" * 32
OTHER = "b" * 32


class FakeSup:
    """A `pysup.gateway.host.CtlHost`: a real rumor store, state dir and metrics; what is
    published is recorded (and merged, as the ring would)."""

    def __init__(self, state_dir: Path) -> None:
        self.settings = Settings(state_dir=str(state_dir))
        self.state = StateDir(state_dir)
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.me = Member(ME, 1, "127.0.0.1", 1)
        self.store = RumorStore()
        self.others = [Member(OTHER, 1, "127.0.0.2", 1, Health.ALIVE)]
        self.published: list[Rumor] = []
        self.services: ServiceManager | None = None
        self.saves = 0

    def local_member(self) -> Member:
        return self.me

    def ring_members(self) -> list[Member]:
        return list(self.others)

    def rumor_store(self) -> RumorStore:
        return self.store

    def publish(self, rumor: Rumor) -> None:
        self.published.append(rumor)
        self.store.merge(rumor)

    def terminate(self) -> None:
        self.stopping.set()

    def persist_rumors(self, extra: Sequence[Rumor] = ()) -> None:
        """What the gateway saves before it publishes (and acknowledges)."""
        self.saves += 1

    def rejected(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "pysup_rejected_inputs_total", {"source": "ctl", "reason": reason}
        )
        return value or 0.0


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[FakeSup, int]]:
    sup = FakeSup(tmp_path / "state")
    server = await ctl.start_ctl_server(sup, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield sup, port
    finally:
        server.close()
        if sup.services is not None:
            await sup.services.stop_all(5.0)


def client(sup: FakeSup, port: int, secret: str | None = None) -> CtlClient:
    return CtlClient("127.0.0.1", port, secret if secret is not None else sup.state.ctl_secret())


async def raw_exchange(port: int, *msgs: dict[str, Any]) -> list[dict[str, Any]]:
    """Send frames, read responses until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for m in msgs:
            writer.write(encode_frame(m))
        await writer.drain()
        out = []
        async with asyncio.timeout(10):
            while True:
                try:
                    header = await reader.readexactly(HEADER.size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return out
                (n,) = HEADER.unpack(header)
                out.append(decode_body(await reader.readexactly(n)))
    finally:
        writer.close()


# --- authentication ---------------------------------------------------------------------------


async def test_right_secret_is_accepted(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    async with client(sup, port) as c:
        # past the auth, requests reach the ops (this fake runs no services)
        with pytest.raises(CtlClientError, match="does not run services"):
            await c.request(SvcStatus())
        assert await c.request(ConfigApply("a.b", 1, b"")) == {
            "ok": True,
            "service_group": "a.b",
            "version": 1,
        }
    assert sup.rejected("bad_secret") == 0
    assert (sup.state.path / "CTL_SECRET").stat().st_mode & 0o777 == 0o600


async def test_wrong_secret_is_refused_counted_and_closed(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    with pytest.raises(CtlClientError, match="wrong control gateway secret"):
        async with client(sup, port, "not-the-secret"):
            pass
    assert sup.rejected("bad_secret") == 1
    # and the connection is closed after the refusal: a request behind it gets no answer
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_frame(Auth("nope").to_wire()))
    header = await asyncio.wait_for(reader.readexactly(HEADER.size), 5)
    reply = decode_body(await reader.readexactly(HEADER.unpack(header)[0]))
    assert reply == {"ok": False, "error": "wrong control gateway secret (CTL_SECRET)"}
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    with contextlib.suppress(ConnectionError):
        writer.write(encode_frame(ConfigApply("a.b", 1, b"").to_wire()))
        await writer.drain()
    writer.close()
    assert sup.published == []
    assert sup.rejected("bad_secret") == 2


async def test_a_request_before_auth_is_refused(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    replies = await raw_exchange(port, SupTerm().to_wire())
    assert len(replies) == 1 and replies[0]["ok"] is False
    assert "authenticate first" in replies[0]["error"]
    assert sup.rejected("no_auth") == 1
    assert not sup.stopping.is_set()


async def test_garbage_first_frame_is_refused(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEADER.pack(3) + b"\xc1\xc1\xc1")
    await writer.drain()
    header = await asyncio.wait_for(reader.readexactly(4), 5)
    reply = decode_body(await reader.readexactly(HEADER.unpack(header)[0]))
    assert reply["ok"] is False and "msgpack" in reply["error"]
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
    writer.close()
    assert sup.rejected("undecodable") == 1


async def test_oversized_header_is_refused_without_reading_the_body(
    gateway: tuple[FakeSup, int],
) -> None:
    sup, port = gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEADER.pack(0xFFFFFFFF))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b"exceeds" in data
    assert sup.rejected("oversized") == 1


async def test_unauthenticated_clients_may_not_send_big_frames(
    gateway: tuple[FakeSup, int],
) -> None:
    sup, port = gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEADER.pack(ctl.MAX_AUTH_FRAME + 1))  # the header alone is refused
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert f"exceeds {ctl.MAX_AUTH_FRAME}".encode() in data
    assert sup.rejected("oversized") == 1


async def test_silent_client_is_cut_off_after_the_auth_timeout(tmp_path: Path) -> None:
    sup = FakeSup(tmp_path / "state")
    server = await ctl.start_ctl_server(sup, "127.0.0.1", 0, auth_timeout_s=0.3)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        server.close()
    assert b"no auth within 0.3s" in data
    assert sup.rejected("auth_timeout") == 1


# --- config apply / file upload ---------------------------------------------------------------


async def test_config_apply_versions_must_grow(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    async with client(sup, port) as c:
        r = await c.request(ConfigApply("redis.default", 2, b"port = 7000\n"))
        assert r == {"ok": True, "service_group": "redis.default", "version": 2}
        stored = sup.store.get(RumorKind.SERVICE_CONFIG, "redis.default", "config")
        assert stored == ServiceConfigRumor("redis.default", 2, b"port = 7000\n")
        assert sup.saves == 1
        for version in (2, 1):
            with pytest.raises(CtlClientError, match=r"must be greater than the current version 2"):
                await c.request(ConfigApply("redis.default", version, b"port = 1\n"))
        # the refusal leaves the session usable and the store unchanged
        await c.request(ConfigApply("redis.default", 3, b"port = 7001\n"))
    assert [r.incarnation for r in sup.published] == [2, 3]


async def test_config_apply_refuses_65k_and_bad_toml(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    async with client(sup, port) as c:
        big = b"# " + b"x" * (65 * 1024) + b"\n"
        with pytest.raises(CtlClientError, match="over the 65536 byte limit"):
            await c.request(ConfigApply("redis.default", 1, big))
        with pytest.raises(CtlClientError, match="not valid TOML"):
            await c.request(ConfigApply("redis.default", 1, b"port = = 1\n"))
        with pytest.raises(CtlClientError, match=r"service\.group"):
            await c.request(ConfigApply("redis", 1, b"port = 1\n"))
        # exactly 64 KiB is fine
        ok_body = b"#" + b"x" * (MAX_BODY - 2) + b"\n"
        await c.request(ConfigApply("redis.default", 1, ok_body))
    assert len(sup.published) == 1


async def test_file_upload_rules(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    async with client(sup, port) as c:
        await c.request(FileUpload("redis.default", 1, "tls.pem", b"PEM"))
        for bad in ("../evil", "a/b", ".."):
            with pytest.raises(CtlClientError, match="may not"):
                await c.request(FileUpload("redis.default", 2, bad, b"x"))
        with pytest.raises(CtlClientError, match="greater than the current version 1"):
            await c.request(FileUpload("redis.default", 1, "tls.pem", b"other"))
        with pytest.raises(CtlClientError, match="byte limit"):
            await c.request(FileUpload("redis.default", 2, "big", b"x" * (MAX_BODY + 1)))
        # versions are per file
        await c.request(FileUpload("redis.default", 1, "other.txt", b"x"))
    assert sup.published == [
        ServiceFileRumor("redis.default", "tls.pem", 1, b"PEM"),
        ServiceFileRumor("redis.default", "other.txt", 1, b"x"),
    ]
    assert sup.rejected("bad_request") == 3


# --- sup ----------------------------------------------------------------------------------------


async def test_depart_publishes_and_refuses_unknown_ids(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    async with client(sup, port) as c:
        with pytest.raises(CtlClientError, match=f"no member {'c' * 32} in the ring"):
            await c.request(SupDepart("c" * 32))
        await c.request(SupDepart(OTHER))
        with pytest.raises(CtlClientError, match="already departed"):
            await c.request(SupDepart(OTHER))
    assert sup.published == [DepartureRumor(OTHER)]


async def test_term_answers_then_stops(gateway: tuple[FakeSup, int]) -> None:
    sup, port = gateway
    async with client(sup, port) as c:
        assert await c.request(SupTerm()) == {"ok": True}
    await asyncio.wait_for(sup.stopping.wait(), 5)


# --- svc, with a real service manager and process ---------------------------------------------


def _plan(tmp_path: Path, name: str = "sleeper") -> Path:
    d = tmp_path / "plans" / name
    (d / "hooks").mkdir(parents=True)
    (d / "plan.toml").write_text(f'name = "{name}"\norigin = "test"\nversion = "1.0.0"\n')
    run = d / "hooks" / "run"
    run.write_text("#!/bin/sh\nexec sleep 120\n")
    run.chmod(0o755)
    return d


async def test_svc_load_status_stop_unload(gateway: tuple[FakeSup, int], tmp_path: Path) -> None:
    sup, port = gateway
    sup.services = ServiceManager(
        state=sup.state,
        sys_info={"ip": "127.0.0.1"},
        member_id=ME,
        census=lambda: empty_census(ME),
        publish=lambda r: None,
    )
    plan = _plan(tmp_path)
    async with client(sup, port) as c:
        with pytest.raises(CtlClientError, match="must be an absolute path"):
            await c.request(SvcLoad("relative/dir"))
        with pytest.raises(CtlClientError, match="health_check_interval"):
            await c.request(SvcLoad(str(plan), health_check_interval_s=-1))
        r = await c.request(SvcLoad(str(plan), group="blue"))
        assert r == {"ok": True, "name": "sleeper", "service_group": "sleeper.blue"}
        spec_file = sup.state.specs_dir / "sleeper.spec.toml"
        assert 'group = "blue"' in spec_file.read_text()
        with pytest.raises(CtlClientError, match="already loaded"):
            await c.request(SvcLoad(str(plan)))

        async def running() -> dict[str, Any] | None:
            rows = (await c.request(SvcStatus("sleeper")))["services"]
            return rows[0] if rows[0]["pid"] else None

        row = await async_wait_for(running, 20, 0.1, "the service's process")
        assert row["package"].startswith("test/sleeper/1.0.0/")
        assert (row["type"], row["desired"], row["state"], row["group"]) == (
            "standalone",
            "up",
            "up",
            "sleeper.blue",
        )
        pid = row["pid"]

        await c.request(SvcStop("sleeper"))
        [spec] = load_saved_specs(sup.state)
        assert spec.desired_state is DesiredState.DOWN
        row = (await c.request(SvcStatus()))["services"][0]
        assert row["desired"] == "down" and row["pid"] is None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            raise AssertionError("the run process survived svc stop")

        with pytest.raises(CtlClientError, match="nosuch is not loaded"):
            await c.request(SvcUnload("nosuch"))
        await c.request(SvcUnload("test/sleeper"))
        assert not spec_file.exists()
        assert (await c.request(SvcStatus()))["services"] == []


def test_load_saved_specs_quarantines_corrupt_files(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    (state.specs_dir / "good.spec.toml").write_text(f'plan_dir = "{tmp_path}"\ngroup = "g"\n')
    (state.specs_dir / "bad.spec.toml").write_text("plan_dir = \n")
    (state.specs_dir / "odd.spec.toml").write_text(f'plan_dir = "{tmp_path}"\ncolour = "red"\n')
    specs = load_saved_specs(state)
    assert [s.group for s in specs] == ["g"]
    left = sorted(p.name for p in state.specs_dir.iterdir())
    assert "good.spec.toml" in left and len(left) == 3
    assert any(n.startswith("bad.spec.toml.corrupt-") for n in left)
    assert any(n.startswith("odd.spec.toml.corrupt-") for n in left)


# --- the CLI ------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pysup", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


async def test_cli_errors_are_one_line(gateway: tuple[FakeSup, int], tmp_path: Path) -> None:
    sup, port = gateway
    state = str(sup.state.path)
    remote = f"127.0.0.1:{port}"
    cfg = tmp_path / "c.toml"
    cfg.write_text("port = 1\n")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _cli(*args, env=env)

    r = await asyncio.to_thread(
        run, "config", "apply", "redis.default", "5", str(cfg), "--remote-sup", remote,
        "--state-dir", state,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Applied version 5" in r.stdout
    cases = [
        (("config", "apply", "redis.default", "5", str(cfg)), "greater than the current"),
        (("config", "apply", "redis.default", "x", str(cfg)), "positive integer"),
        (("config", "apply", "redis.default", "6", str(tmp_path / "none")), "cannot read"),
        (("file", "upload", "redis.default", "1", str(cfg), "--name", "../x"), "may not"),
    ]
    for args, needle in cases:
        r = await asyncio.to_thread(run, *args, "--remote-sup", remote, "--state-dir", state)
        assert r.returncode == 1, r
        assert needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = await asyncio.to_thread(
        run, "sup", "depart", OTHER, "--remote-sup", remote, env={"HAB_CTL_SECRET": "wrong"}
    )
    assert r.returncode == 1 and "wrong control gateway secret" in r.stderr
    assert r.stderr.count("\n") == 1
    r = await asyncio.to_thread(
        run, "svc", "status", "--remote-sup", "127.0.0.1:1", env={"PYSUP_CTL_SECRET": "x"}
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no supervisor listening on 127.0.0.1:1" in r.stderr
