"""`pysup ring`'s pure parts: the ports it will use, the plans' ports moved per member and with
--base-port, the ring file, /proc/net parsing (who holds a port), and what it prints at start.
The real ring (processes, sockets) is tests/integration/test_local_ring.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pysup import localring
from pysup.portcheck import (
    TCP_LISTEN,
    Holder,
    PortUse,
    ProcSocket,
    Taken,
    decode_address,
    holding_inodes,
    parse_proc_net,
)
from pysup.ringinfo import MemberAddrs, RingFileError, find_member, write_ring_file

REPO = Path(__file__).resolve().parents[2]
HABSUP = str(REPO / "plans" / "habsup")

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4101 1
   1: 0100007F:25AF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4102 1
   2: 0100007F:25AF 0100007F:C31C 01 00000000:00000000 00:00000000 00000000     0        0 4103 1
   3: 0200007F:25B0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4104 1
   4: garbage
"""
TCP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6101 1
   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6102 1
"""  # noqa: E501


def test_proc_net_addresses_decode_ipv4_ipv6_and_mapped() -> None:
    assert decode_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert decode_address("00000000:25AF") == ("0.0.0.0", 9647)
    assert decode_address("00000000000000000000000001000000:1F91") == ("::1", 8081)
    assert decode_address("0000000000000000FFFF00000100007F:1F92") == ("127.0.0.1", 8082)


def test_proc_net_tables_parse_and_skip_garbage() -> None:
    sockets = parse_proc_net(TCP_TABLE)
    assert [(s.ip, s.port, s.state, s.inode) for s in sockets] == [
        ("0.0.0.0", 8080, TCP_LISTEN, 4101),
        ("127.0.0.1", 9647, TCP_LISTEN, 4102),
        ("127.0.0.1", 9647, "01", 4103),
        ("127.0.0.2", 9648, TCP_LISTEN, 4104),
    ]
    assert [s.inode for s in parse_proc_net(TCP6_TABLE)] == [6101, 6102]


def test_holders_are_listeners_on_an_overlapping_address() -> None:
    sockets = parse_proc_net(TCP_TABLE)
    # The established connection (4103) does not keep a server from binding; the listener does.
    assert holding_inodes(sockets, PortUse("127.0.0.1", 9647, "tcp", "x")) == {4102}
    # A wildcard listener holds the port for every address, and a wildcard bind meets any.
    assert holding_inodes(sockets, PortUse("127.0.0.1", 8080, "tcp", "x")) == {4101}
    assert holding_inodes(sockets, PortUse("0.0.0.0", 9648, "tcp", "x")) == {4104}
    # Another loopback address does not conflict.
    assert holding_inodes(sockets, PortUse("127.0.0.1", 9648, "tcp", "x")) == set()
    udp = [ProcSocket("127.0.0.1", 9638, "07", 7001)]
    assert holding_inodes(udp, PortUse("127.0.0.1", 9638, "udp", "x")) == {7001}


def test_a_taken_port_names_its_holder_or_says_it_cannot() -> None:
    use = PortUse("127.0.0.1", 9632, "tcp", "member 0 control gateway")
    seen = Taken(use, "Address already in use", (Holder(42, "python3", "python3 -m x"),))
    assert seen.describe() == (
        "127.0.0.1:9632/tcp member 0 control gateway: taken by python3 (pid 42): python3 -m x"
    )
    hidden = Taken(use, "Address already in use", ()).describe()
    assert "cannot see" in hidden and "ss -ltnup" in hidden
    assert "Permission denied" in Taken(use, "Permission denied", ()).describe()


def test_ring_ports_cover_every_member_and_the_plans_ports() -> None:
    uses = localring.ring_ports(2, 9631, [HABSUP])
    got = {(u.host, u.port, u.proto): u.what for u in uses}
    assert got == {
        ("127.0.0.1", 9631, "tcp"): "member 0 HTTP gateway",
        ("127.0.0.1", 9632, "tcp"): "member 0 control gateway",
        ("127.0.0.1", 9638, "tcp"): "member 0 gossip",
        ("127.0.0.1", 9638, "udp"): "member 0 gossip",
        ("0.0.0.0", 8080, "tcp"): "member 0 habsup http.port",
        ("127.0.0.1", 9641, "tcp"): "member 1 HTTP gateway",
        ("127.0.0.1", 9642, "tcp"): "member 1 control gateway",
        ("127.0.0.1", 9648, "tcp"): "member 1 gossip",
        ("127.0.0.1", 9648, "udp"): "member 1 gossip",
        ("0.0.0.0", 8081, "tcp"): "member 1 habsup http.port",
    }


def test_base_port_moves_the_plans_ports_too() -> None:
    moved = localring.ring_ports(1, 19631, [HABSUP])
    assert {u.port for u in moved} == {19631, 19632, 19638, 18080}
    assert json.loads(localring.plan_env([HABSUP], 2, 19631)["HAB_HABSUP"]) == {
        "http": {"port": 18082}
    }
    with pytest.raises(ValueError, match="outside 1-65535"):
        localring.ring_ports(1, 65530, [HABSUP])
    message = localring.preflight(1, 65530, [HABSUP])
    assert message is not None and "--base-port 65530" in message


def test_ring_file_round_trip_and_member_lookup(tmp_path: Path) -> None:
    members = [localring.member_addrs(i, tmp_path / "ring", 9631) for i in range(3)]
    write_ring_file(tmp_path / "ring", members)
    assert find_member(tmp_path / "ring", 1) == MemberAddrs(
        1, "127.0.0.1:9641", "127.0.0.1:9642", "127.0.0.1:9648", str(tmp_path / "ring/member-1")
    )
    with pytest.raises(RingFileError, match=r"no member 7 \(members: 0, 1, 2\)"):
        find_member(tmp_path / "ring", 7)
    with pytest.raises(RingFileError, match="no ring file"):
        find_member(tmp_path / "elsewhere", 0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ring.json").write_text('{"members": [{"index": 0}]}')
    with pytest.raises(RingFileError, match="not one `pysup ring` wrote"):
        find_member(tmp_path / "bad", 0)


def test_the_banner_says_how_to_reach_every_member() -> None:
    text = localring.banner(3, [HABSUP], Path("state/ring"), 9631)
    rows = [line.split() for line in text.splitlines() if line.startswith("  1 ")]
    assert rows == [
        [
            "1",
            "http://127.0.0.1:9641",
            "127.0.0.1:9642",
            "127.0.0.1:9648",
            "state/ring/member-1",
            "habsup",
            "http.port",
            "8081",
        ]
    ]
    assert "svc status --member 1 " in text and "--ring-root" not in text
    assert "curl -s localhost:8080/" in text and "state/ring/ring.json" in text
    assert "Dashboard: http://127.0.0.1:9631/ui/ " in text  # member 0's
    other = localring.banner(1, [], Path("/tmp/r"), 9631)
    assert "svc status --member 0 --ring-root /tmp/r" in other


def test_member_commands_join_member_zero_on_the_ring_ports(tmp_path: Path) -> None:
    cmd = localring.member_command(2, [HABSUP], tmp_path, [], 9631)
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert flags["--listen-http"] == "127.0.0.1:9651"
    assert flags["--listen-ctl"] == "127.0.0.1:9652"
    assert flags["--listen-gossip"] == "127.0.0.1:9658"
    assert cmd[-2:] == ["--peer", "127.0.0.1:9638"]
    assert "--peer" not in localring.member_command(0, [], tmp_path, [], 9631)
