"""The egress rules and the host proxy on their own: no sandbox, real sockets.

The whole path through a real sandbox is in test_egress.py; here are the
decisions that need many cases (addresses, patterns, settings) and the DNS
rebinding attack, which needs a resolver that changes its answer.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from traitlets import TraitError

from codeact_kernel import SandboxConfig
from codeact_kernel.policy import Policy
from codeact_kernel.sandbox.egress import EgressPolicy, EgressProxy
from codeact_kernel.sandbox.egress.policy import address_kind, ip_literal

from .egress_servers import serve

NON_PUBLIC = {
    "127.0.0.1": "loopback", "127.8.9.1": "loopback", "10.1.2.3": "private",
    "172.16.0.1": "private", "192.168.1.1": "private", "169.254.169.254": "link-local",
    "100.100.100.200": "non-global", "0.0.0.0": "unspecified", "224.0.0.1": "multicast",
    "240.0.0.1": "reserved", "::1": "loopback", "fe80::1": "link-local", "fc00::1": "private",
    "fd00:ec2::254": "private", "::ffff:127.0.0.1": "loopback", "64:ff9b::a00:1": "private",
    "2002:7f00:1::": "loopback", "192.0.2.1": "private",
}  # fmt: skip


@pytest.mark.parametrize("address", sorted(NON_PUBLIC))
def test_non_public_addresses_are_named(address: str) -> None:
    assert address_kind(address) == NON_PUBLIC[address]


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_kind(address) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "::1", "2130706433", "0x7f.1",
                                  "10.0.0.010", "1.1"])
def test_every_spelling_of_an_address_is_an_ip_literal(host: str) -> None:
    assert ip_literal(host)


def policy(**kw: object) -> EgressPolicy:
    values: dict[str, object] = {"allowed": ["data.example.org", "*.cdn.example.net"],
                                 "denied": ["bad.cdn.example.net"], "ports": [80, 443],
                                 "methods": "all", "resolve": {}}
    values.update(kw)
    return EgressPolicy.from_settings(**values)  # type: ignore[arg-type]


def test_domain_patterns_and_deny_wins() -> None:
    p = policy()
    assert p.check_request("GET", "Data.Example.Org.", 80, False).allowed
    assert p.check_request("GET", "img.cdn.example.net", 443, True).rule == (
        "allowed_domains: *.cdn.example.net")
    assert not p.check_request("GET", "cdn.example.net", 80, False).allowed  # not the apex
    assert not p.check_request("GET", "x.data.example.org", 80, False).allowed
    assert not p.check_request("GET", "data.example.org.evil.com", 80, False).allowed
    assert not p.check_request("GET", "evilcdn.example.net", 80, False).allowed
    verdict = p.check_request("GET", "bad.cdn.example.net", 443, True)
    assert (verdict.allowed, verdict.rule) == (False, "denied_domains")
    assert "SandboxConfig.denied_domains" in verdict.message
    assert p.check_request("GET", "bad host", 80, False).rule == "host"
    assert p.check_request("GET", "dätä.example.org", 80, False).rule == "host"


def test_ports_and_methods() -> None:
    p = policy(methods="read-only")
    assert p.check_request("GET", "data.example.org", 8080, False).rule == "allowed_ports"
    assert p.check_request("HEAD", "data.example.org", 80, False).allowed
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert p.check_request(method, "data.example.org", 80, False).rule == "egress_methods"
    assert p.check_request("CONNECT", "data.example.org", 443, True).rule == "egress_methods"
    assert policy().check_request("POST", "data.example.org", 80, False).allowed


def test_pins_allow_exactly_the_pinned_address_and_port() -> None:
    p = policy(resolve={"data.example.org:443": "127.0.0.1:8443"})
    assert p.pinned("DATA.example.org", 443) == ("127.0.0.1", 8443)
    assert p.pinned("data.example.org", 80) is None  # another port resolves normally
    assert not p.check_addresses("data.example.org", 80, ["127.0.0.1"]).allowed


def test_settings_are_checked_when_set_naming_the_trait() -> None:
    with pytest.raises(TraitError, match=r"SandboxConfig.allowed_domains.*'10.0.0.1'.*pin"):
        SandboxConfig(allowed_domains=["10.0.0.1"])
    with pytest.raises(TraitError, match=r"SandboxConfig.denied_domains"):
        SandboxConfig(denied_domains=["*"])
    with pytest.raises(TraitError, match=r"egress_resolve key 'data.test'"):
        SandboxConfig(egress_resolve={"data.test": "127.0.0.1:80"})
    with pytest.raises(TraitError, match=r"must be an IP address"):
        SandboxConfig(egress_resolve={"data.test:80": "other.test:80"})
    config = SandboxConfig(allowed_domains=["Data.Test", "*.Example.ORG"])
    assert config.allowed_domains == ["data.test", "*.example.org"]
    assert config.egress_enabled and not SandboxConfig().egress_enabled
    assert not SandboxConfig(allowed_domains=["a.test"], mode="none").egress_enabled


def test_http_clients_are_importable_only_with_egress() -> None:
    code = "import requests\nimport urllib.request\nimport httpx\n"
    closed = Policy().check(code)
    assert not closed.allowed and closed.rules == ["import"]
    opened = Policy(egress=True)
    assert opened.check(code).allowed
    assert not opened.check("import socket\nimport subprocess\n").allowed


def _ask(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_dns_rebinding_cannot_swap_the_address(tmp_path: Path) -> None:
    # A rebinding DNS server answers a public address to the check and loopback to the
    # connect. The proxy asks once and connects to the address it checked.
    answers = [["8.8.8.8"], ["127.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked) - 1, 1)]

    with serve() as (port, seen):
        p = policy(ports=[port])
        with EgressProxy(p, tmp_path / "p.sock", resolver=rebinding, connect_timeout=1) as proxy:
            started = time.monotonic()
            reply = _ask(proxy.socket_path, f"GET http://data.example.org:{port}/ HTTP/1.1\r\n"
                                            "\r\n".encode())
            records = proxy.drain()
        assert time.monotonic() - started < 10
        assert asked == ["data.example.org"]
        assert reply.split(b"\r\n")[0].split(b" ")[1] in (b"502", b"504")
        assert f"(8.8.8.8:{port})".encode() in reply
        assert seen.requests == []  # the loopback server never saw it
        assert records[0]["allowed"] and records[0]["status"] in (502, 504)


def test_a_name_with_any_private_answer_is_refused(tmp_path: Path) -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "10.0.0.7"]

    with EgressProxy(policy(), tmp_path / "p.sock", resolver=mixed) as proxy:
        reply = _ask(proxy.socket_path, b"GET http://data.example.org/ HTTP/1.1\r\n\r\n")
        records = proxy.drain()
    assert reply.startswith(b"HTTP/1.1 403 ") and b"10.0.0.7, a private address" in reply
    assert (records[0]["rule"], records[0]["allowed"]) == ("address", False)


def test_the_record_log_is_bounded(tmp_path: Path) -> None:
    with EgressProxy(policy(), tmp_path / "p.sock", max_records=3) as proxy:
        for _ in range(5):
            _ask(proxy.socket_path, b"GET http://evil.test/ HTTP/1.1\r\n\r\n")
        records = proxy.drain()
    assert [r["rule"] for r in records] == ["allowed_domains"] * 3 + ["log-limit"]
    assert records[-1]["error"] == "2 more requests not recorded"
