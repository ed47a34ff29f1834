"""Security parity with hab-sup, end to end: three real `pysup run` processes with TLS on both
gateways, driven by the real `pysup` CLI, curl and Python's ssl client. Tests share one ring and
run in file order (the last one stops member 0).

Key material is made here: a test CA (HTTP gateway certificates, client certificate), each
member's control gateway pair by `pysup sup secret generate-tls` into its key cache's `ctl/`
(found there by `--ctl-server-certificate`/`--ctl-server-key` given without a value), a user key by
`pysup user key generate`, and the service key `demo.default@acme` WRITTEN BY HAND in Habitat's
file format (CRLF and a trailing newline, from raw PyNaCl bytes). Members 0 and 1 hold the service
key; member 2 holds only the user's public key.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.public
import pytest
from cryptography import x509

from pysup.testing.certs import Issued, TestCA
from tests.integration.test_ctl_ring import make_plan, ok, refused  # the same plan, checks
from tests.util import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONVERGE_S = 30.0
SERVICE_KEY = "demo.default@acme"
SERVICE_REV = "20240301123045"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
    env.update(extra)
    return env


def pysup(*args: str, env: dict[str, str], stdin: bytes | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "pysup", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=env,
    )


class Member:
    def __init__(self, i: int, root: Path, ca: TestCA) -> None:
        self.i = i
        self.root = root
        self.state = root / f"member-{i}"
        self.keys = root / f"keys-{i}"
        self.http, self.ctl_port, self.gossip = free_port(), free_port(), free_port()
        self.log = root / f"member-{i}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.server: Issued = ca.issue(f"server-{i}", ("localhost", "127.0.0.1"))
        self.ca = ca
        self.client_ca: Path | None = None  # --ca-certs

    def start(self, peer: Member | None) -> None:
        cmd = [sys.executable, "-m", "pysup", "run", "--gossip-profile", "local"]
        cmd += [
            "--listen-http",
            f"127.0.0.1:{self.http}",
            "--listen-ctl",
            f"127.0.0.1:{self.ctl_port}",
        ]
        cmd += ["--listen-gossip", f"127.0.0.1:{self.gossip}", "--state-dir", str(self.state)]
        cmd += ["--cache-key-path", str(self.keys), "--ctl-server-certificate", "--ctl-server-key"]
        cmd += ["--certs", str(self.server.certificate), "--key", str(self.server.key)]
        if self.client_ca is not None:
            cmd += ["--ca-certs", str(self.client_ca)]
        if peer is not None:
            cmd += ["--peer", f"127.0.0.1:{peer.gossip}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        wait_for(self.ready, 20, 0.1, f"member {self.i} to serve HTTPS")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"member {self.i} exited:\n{self.tail()}")
        return (self.state / "CTL_SECRET").exists() and self.get("/healthz") is not None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def https_context(self, client_cert: Issued | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.certificate))
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert.certificate), str(client_cert.key))
        return ctx

    def get(self, path: str, client_cert: Issued | None = None) -> Any:
        """JSON of an HTTPS GET (verifying the server against the test CA), None on failure."""
        url = f"https://localhost:{self.http}{path}"
        try:
            ctx = self.https_context(client_cert or getattr(self, "client_cert", None))
            with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def ctl_env(self, **extra: str) -> dict[str, str]:
        return clean_env(
            HAB_CTL_SERVER_CA_CERTIFICATE=str(self.keys / "ctl"),  # a directory: newest cert
            HAB_CTL_SERVER_NAME_INDICATION="localhost",
            HAB_ORG="acme",
            **extra,
        )

    def ctl(self, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Any:
        where = ["--remote-sup", f"127.0.0.1:{self.ctl_port}", "--state-dir", str(self.state)]
        return pysup(*args, *where, env=self.ctl_env() if env is None else env, stdin=stdin)

    def read(self, *parts: str) -> str:
        try:
            return self.state.joinpath("svc", "demo", *parts).read_text()
        except OSError:
            return ""

    def member_id(self) -> str:
        return (self.state / "MEMBER_ID").read_text().strip()


def hand_written_service_key() -> tuple[str, str]:
    """The service key pair as a person would type it: Habitat's four lines, CRLF line ends and a
    trailing newline (Habitat itself writes LF and none). Returns (secret text, public text)."""
    secret = nacl.public.PrivateKey.generate()
    name = f"{SERVICE_KEY}-{SERVICE_REV}"
    sec = f"BOX-SEC-1\r\n{name}\r\n\r\n{base64.b64encode(bytes(secret)).decode()}\r\n"
    pub = f"BOX-PUB-1\r\n{name}\r\n\r\n{base64.b64encode(bytes(secret.public_key)).decode()}\r\n"
    return sec, pub


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    root = tmp_path_factory.mktemp("security-ring")
    ca = TestCA(root / "ca")
    members = [Member(i, root, ca) for i in range(3)]
    members[0].client_ca = ca.certificate  # member 0 requires client certificates on HTTP
    client = ca.issue("client", client=True)
    members[0].client_cert = client  # type: ignore[attr-defined]
    # the operator's key cache: a user key made by the CLI, the service's public key by hand
    user_keys = root / "user-keys"
    ok(
        pysup(
            "user", "key", "generate", "alice", "--cache-key-path", str(user_keys), env=clean_env()
        )
    )
    sec, pub = hand_written_service_key()
    (user_keys / f"{SERVICE_KEY}-{SERVICE_REV}.pub").write_text(pub)
    [user_pub] = user_keys.glob("alice-*.pub")
    for m in members:
        m.keys.mkdir(parents=True)
        shutil.copy(user_pub, m.keys)
        # each member's ctl TLS pair, in the default place of its key cache
        ok(
            pysup(
                "sup", "secret", "generate-tls", "--subject-alternative-name", "localhost",
                env=clean_env(HAB_CACHE_KEY_PATH=str(m.keys)),
            )
        )  # fmt: skip
    for m in members[:2]:
        (m.keys / f"{SERVICE_KEY}-{SERVICE_REV}.box.key").write_text(sec)
        (m.keys / f"{SERVICE_KEY}-{SERVICE_REV}.pub").write_text(pub)
    plan = make_plan(root)
    try:
        for m in members:
            m.start(members[0] if m.i else None)
        ids = [m.member_id() for m in members]
        for m in members:
            wait_for(
                lambda m=m: (
                    len((m.get("/butterfly") or {}).get("member", {}).get("health", {})) == 3
                    and all(h == "Alive" for h in m.get("/butterfly")["member"]["health"].values())
                ),
                CONVERGE_S,
                0.2,
                f"member {m.i} to see the others alive over HTTPS",
            )
        for m in members:
            assert "Loaded demo into demo.default" in ok(m.ctl("svc", "load", str(plan)))
        for m in members:
            wait_for(
                lambda m=m: m.read("config", "app.conf") == "value=initial\n",
                CONVERGE_S,
                0.2,
                f"member {m.i} to render its config",
            )
        assert len(set(ids)) == 3
        yield members
    finally:
        for m in members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(5)


# --- 1. HTTP gateway TLS ----------------------------------------------------------------------


def test_https_serves_the_api_and_plain_http_gets_nothing(ring: list[Member]) -> None:
    m = ring[1]
    census = m.get("/census")
    assert census is not None and "demo.default" in census["census_groups"]
    assert (m.get("/readyz") or {}).get("ready") is True
    curl = subprocess.run(
        ["curl", "-sS", "--cacert", str(m.ca.certificate), f"https://localhost:{m.http}/healthz"],
        capture_output=True,
        timeout=20,
    )
    assert curl.returncode == 0 and json.loads(curl.stdout) == {"status": "ok"}, curl.stderr
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{m.http}/healthz", timeout=3)


def test_a_client_certificate_is_required_and_refused_when_missing(ring: list[Member]) -> None:
    m = ring[0]
    assert m.get("/healthz", client_cert=m.client_cert) == {"status": "ok"}  # type: ignore[attr-defined]
    url = f"https://localhost:{m.http}/healthz"
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(url, timeout=3, context=m.https_context(None)).read()
    curl = subprocess.run(
        ["curl", "-sS", "--cacert", str(m.ca.certificate), url], capture_output=True, timeout=20
    )
    assert curl.returncode != 0 and b'"ok"' not in curl.stdout


def served_serial(m: Member) -> int:
    raw = socket.create_connection(("127.0.0.1", m.http), timeout=3)
    with m.https_context().wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_a_rotated_certificate_is_served_without_restart(ring: list[Member]) -> None:
    m = ring[1]
    pid = m.proc.pid if m.proc else None
    assert served_serial(m) == m.server.serial
    fresh = m.ca.issue("fresh", ("localhost", "127.0.0.1"))
    # Replace the files in place (rename over them), key first: the watcher may see a mismatched
    # pair for a moment, refuses it and keeps serving the old one until the certificate lands.
    os.replace(fresh.key, m.server.key)
    os.replace(fresh.certificate, m.server.certificate)
    wait_for(lambda: served_serial(m) == fresh.serial, 10, 0.2, "the rotated certificate")
    assert m.proc is not None and m.proc.pid == pid and m.proc.poll() is None


def test_the_container_healthcheck_hook_speaks_https(ring: list[Member]) -> None:
    hook = Path(__file__).resolve().parents[2] / "hooks" / "healthcheck"
    m0, m1 = ring[0], ring[1]

    def run(m: Member, **env: str) -> Any:
        base = clean_env(HAB_LISTEN_HTTP=f"127.0.0.1:{m.http}", **env)
        return subprocess.run(
            [sys.executable, str(hook)], env=base, capture_output=True, timeout=20
        )

    tls = {"PYSUP_TLS_CERTS": str(m1.server.certificate)}
    r = run(m1, **tls)
    assert r.returncode == 0 and b"healthy: https://" in r.stdout, r.stdout
    assert run(m1).returncode == 1  # plain HTTP at a TLS gateway: unhealthy, not a hang
    client = m0.client_cert  # type: ignore[attr-defined]
    assert run(m0, **tls).returncode == 1  # member 0 requires a client certificate
    r = run(
        m0,
        **tls,
        PYSUP_TLS_CLIENT_CERT=str(client.certificate),
        PYSUP_TLS_CLIENT_KEY=str(client.key),
    )
    assert r.returncode == 0, r.stdout


def test_census_reads_an_https_gateway(ring: list[Member]) -> None:
    """`pysup census` over HTTPS: the CA by flag or PYSUP_HTTP_CA_CERTIFICATE, a client
    certificate from the hooks' PYSUP_TLS_CLIENT_CERT/_KEY; mismatches are one line."""
    m0, m1 = ring[0], ring[1]
    ca = str(m1.ca.certificate)
    table = ok(pysup("census", "--http", f"https://localhost:{m1.http}", "--cacert", ca,
                     env=clean_env()))  # fmt: skip
    assert "demo.default" in table and table.count("Alive") == 3, table
    env = clean_env(PYSUP_HTTP_CA_CERTIFICATE=ca)  # a CA alone means HTTPS
    refused(pysup("census", "--http", f"localhost:{m0.http}", env=env), "require a client cert")
    client = m0.client_cert  # type: ignore[attr-defined]
    env.update(PYSUP_TLS_CLIENT_CERT=str(client.certificate), PYSUP_TLS_CLIENT_KEY=str(client.key))
    census = json.loads(ok(pysup("census", "--http", f"localhost:{m0.http}", "--json", env=env)))
    assert census["local_member_id"] == m0.member_id() and len(census["members"]) == 3
    plain = pysup("census", "--http", f"127.0.0.1:{m1.http}", env=clean_env())
    refused(plain, f"(if it serves HTTPS, use --http https://127.0.0.1:{m1.http}")
    untrusted = pysup("census", "--http", f"https://localhost:{m1.http}", env=clean_env())
    refused(untrusted, "is not trusted")  # the system's trust store does not know the test CA


# --- 2. control gateway TLS -------------------------------------------------------------------


def test_svc_status_over_tls(ring: list[Member]) -> None:
    [row] = json.loads(ok(ring[2].ctl("svc", "status", "--json")))
    assert row["group"] == "demo.default" and row["state"] == "up"


def test_config_apply_over_tls_reaches_every_member(ring: list[Member]) -> None:
    ok(ring[0].ctl("config", "apply", "demo.default", "2", "-", stdin=b'value = "two"\n'))
    for m in ring:
        wait_for(lambda m=m: m.read("config", "app.conf") == "value=two\n", CONVERGE_S, 0.2, "v2")


def test_plain_text_to_a_tls_control_gateway_is_one_clear_line(ring: list[Member]) -> None:
    m = ring[0]
    env = clean_env()
    r = pysup(
        "svc",
        "status",
        "--remote-sup",
        f"127.0.0.1:{m.ctl_port}",
        "--state-dir",
        str(m.state),
        env=env,
    )
    refused(r, "HAB_CTL_SERVER_CA_CERTIFICATE")
    # a certificate that does not name the host connected to is refused, not ignored
    no_sni = {k: v for k, v in m.ctl_env().items() if k != "HAB_CTL_SERVER_NAME_INDICATION"}
    refused(m.ctl("svc", "status", env=no_sni), "not trusted")


def test_tls_to_a_plain_control_gateway_is_one_clear_line(tmp_path: Path) -> None:
    state, ctl, http = tmp_path / "plain", free_port(), free_port()
    cmd = [sys.executable, "-m", "pysup", "run", "--listen-ctl", f"127.0.0.1:{ctl}"]
    cmd += ["--listen-http", f"127.0.0.1:{http}", "--listen-gossip", f"127.0.0.1:{free_port()}"]
    cmd += ["--state-dir", str(state), "--gossip-profile", "local"]
    log = open(tmp_path / "plain.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_for(lambda: (state / "CTL_SECRET").exists(), 20, 0.1, "the plain supervisor")
        keys = tmp_path / "keys"
        ok(pysup("sup", "secret", "generate-tls", "--subject-alternative-name", "localhost",
                 str(keys), env=clean_env()))  # fmt: skip
        env = clean_env(HAB_CTL_SERVER_CA_CERTIFICATE=str(keys))
        r = pysup(
            "svc", "status", "--remote-sup", f"localhost:{ctl}", "--state-dir", str(state), env=env
        )
        refused(r, "does not speak TLS")
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


# --- 3. encrypted configuration and files -----------------------------------------------------


def test_encrypted_config_changes_only_members_with_the_service_key(ring: list[Member]) -> None:
    m0, m1, m2 = ring
    user_keys = m0.root / "user-keys"
    r = m0.ctl(
        "config", "apply", "demo.default", "3", "-", "--user", "alice",
        "--cache-key-path", str(user_keys), stdin=b'value = "secret"\n',
    )  # fmt: skip
    out = ok(r)
    assert "Encrypting TOML as alice-" in out and f"for {SERVICE_KEY}-{SERVICE_REV}" in out
    for m in (m0, m1):
        wait_for(
            lambda m=m: m.read("config", "app.conf") == "value=secret\n", CONVERGE_S, 0.2, "v3"
        )

    def m2_holds_it() -> bool:
        cfg = (m2.get("/butterfly") or {}).get("service_config", {}).get("list", {})
        entry = cfg.get("demo.default") or {}
        return entry.get("incarnation") == 3 and entry.get("encrypted") is True

    wait_for(m2_holds_it, CONVERGE_S, 0.2, "member 2 to hold (and gossip) the encrypted rumor")
    assert "value=secret" not in m2.read("config", "app.conf")
    assert m2.read("config", "app.conf") == "value=two\n"
    metrics = urllib.request.urlopen(
        f"https://localhost:{m2.http}/metrics", timeout=3, context=m2.https_context()
    ).read()
    assert b'source="sealed"' in metrics and b'reason="no_service_key"' in metrics
    wait_for(lambda: "sealed.unreadable" in m2.log.read_text(), 10, 0.2, "member 2 to say why")
    assert "sealed.unreadable" not in m0.log.read_text() + m1.log.read_text()
    # once per rumor version, however often the census is rebuilt
    assert m2.log.read_text().count("sealed.unreadable") == 1


def test_encrypted_file_upload_lands_only_where_the_key_is(
    ring: list[Member], tmp_path: Path
) -> None:
    m0, m1, m2 = ring
    f = tmp_path / "token.txt"
    f.write_bytes(b"s3cret token\n")
    out = ok(
        m0.ctl("file", "upload", "demo.default", "1", str(f), "--user", "alice",
               "--cache-key-path", str(m0.root / "user-keys"))
    )  # fmt: skip
    assert "Encrypting file token.txt as alice-" in out
    for m in (m0, m1):
        wait_for(
            lambda m=m: m.read("files", "token.txt") == "s3cret token\n", CONVERGE_S, 0.2, "file"
        )

    def m2_holds_it() -> bool:
        files = (m2.get("/butterfly") or {}).get("service_file", {}).get("list", {})
        return ((files.get("demo.default") or {}).get("token.txt") or {}).get("encrypted") is True

    wait_for(m2_holds_it, CONVERGE_S, 0.2, "member 2 to hold the encrypted file rumor")
    assert not m2.state.joinpath("svc", "demo", "files", "token.txt").exists()


def test_wrong_or_missing_keys_are_refused_with_one_line(
    ring: list[Member], tmp_path: Path
) -> None:
    m0 = ring[0]
    user_keys = m0.root / "user-keys"
    refused(
        m0.ctl("config", "apply", "demo.default", "9", "-", "--user", "bob",
               "--cache-key-path", str(user_keys), stdin=b"value = 1\n"),
        "no user secret key bob",
    )  # fmt: skip
    truncated = tmp_path / "keys"
    shutil.copytree(user_keys, truncated)
    pub = truncated / f"{SERVICE_KEY}-{SERVICE_REV}.pub"
    pub.write_text(pub.read_text()[:40])
    refused(
        m0.ctl("config", "apply", "demo.default", "9", "-", "--user", "alice",
               "--cache-key-path", str(truncated), stdin=b"value = 1\n"),
        "cannot encrypt TOML",
    )  # fmt: skip
    # a payload not addressed to the group is refused by the gateway before it is gossiped
    refused(
        m0.ctl("config", "apply", "other.default", "9", "-", "--user", "alice",
               "--cache-key-path", str(user_keys), stdin=b"value = 1\n"),
        "no service public key other.default@acme",
    )  # fmt: skip


def test_a_member_without_the_key_passes_the_rumor_on(ring: list[Member]) -> None:
    """Member 1 is down while version 4 is applied on member 0; member 0 then leaves. Member 1
    restarts with member 2 (no service key) as its only peer: the only copy it can get is the one
    member 2 kept and gossips; it decrypts it and renders."""
    m0, m1, m2 = ring
    m1.stop()
    r = m0.ctl(
        "config", "apply", "demo.default", "4", "-", "--user", "alice",
        "--cache-key-path", str(m0.root / "user-keys"), stdin=b'value = "four"\n',
    )  # fmt: skip
    ok(r)

    def m2_has_v4() -> bool:
        cfg = (m2.get("/butterfly") or {}).get("service_config", {}).get("list", {})
        return (cfg.get("demo.default") or {}).get("incarnation") == 4

    wait_for(m2_has_v4, CONVERGE_S, 0.2, "member 2 to hold version 4")
    m0.stop()
    assert m1.read("config", "app.conf") == "value=secret\n"
    m1.start(m2)
    wait_for(lambda: m1.read("config", "app.conf") == "value=four\n", CONVERGE_S, 0.2, "v4 via m2")
    assert m2.read("config", "app.conf") == "value=two\n"


def test_the_pre_stop_hook_departs_over_https(ring: list[Member]) -> None:
    """hooks/pre-stop with PYSUP_TLS_CERTS (as the TLS StatefulSet sets it): POST /sup/depart and
    the /services polls go over HTTPS; the member stops its service and is Departed on the
    others. Without it, plain HTTP at the TLS gateway is an error (exit 1), not "nothing to
    stop". Runs last: member 2 leaves the ring."""
    hook = Path(__file__).resolve().parents[2] / "hooks" / "pre-stop"
    m1, m2 = ring[1], ring[2]

    def run(**env: str) -> Any:
        base = clean_env(HAB_LISTEN_HTTP=f"127.0.0.1:{m2.http}", PYSUP_PRESTOP_TIMEOUT="20", **env)
        return subprocess.run(
            [sys.executable, str(hook)], env=base, capture_output=True, timeout=40
        )

    plain = run()
    assert plain.returncode == 1 and b"PYSUP_TLS_CERTS is not set" in plain.stdout, plain.stdout
    assert [svc["process"]["state"] for svc in m2.get("/services")] == ["up"]  # nothing stopped
    r = run(PYSUP_TLS_CERTS=str(m2.server.certificate))
    assert r.returncode == 0, r.stdout
    assert b"departure accepted" in r.stdout and b"no services up" in r.stdout, r.stdout
    m2_id = m2.member_id()

    def departed_on_m1() -> bool:
        health = (m1.get("/butterfly") or {}).get("member", {}).get("health", {})
        return health.get(m2_id) == "Departed"

    wait_for(departed_on_m1, CONVERGE_S, 0.2, "member 1 to see member 2 Departed")
