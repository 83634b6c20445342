"""The egress rules: which host, port and method a request from the sandbox may use.

Pure functions of the configuration, kept apart from the proxy so that every
decision is testable without a socket. Each denial names the rule and the
SandboxConfig setting that would change it, because that text is what the
code in the kernel sees.

Addresses are judged after resolution: a name is only as safe as the address
it resolves to, so every connection goes to an address checked here, and the
proxy connects to that very address (no second lookup a rebinding DNS server
could answer differently). ``egress_resolve`` pins are the one way to reach a
non-public address, and they allow exactly the pinned address and port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
# IPv6 prefixes that carry an IPv4 address a gateway would reach (NAT64).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Decision:
    """The verdict on one request: ``rule`` names what decided, ``message`` explains a denial."""

    allowed: bool
    rule: str
    message: str = ""


def normalize_host(host: str) -> str | None:
    """The lower-case DNS name, or None when ``host`` is not a plain DNS name."""
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    return name


def ip_literal(host: str) -> bool:
    """Whether ``host`` names an address rather than a host: any form a resolver would
    turn into one (``127.0.0.1``, ``[::1]``, ``2130706433``, ``0x7f.1``)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
        return True
    except ValueError:
        pass
    labels = bare.lower().rstrip(".").split(".")
    return bool(labels) and _NUMERIC.match(labels[-1]) is not None


def address_kind(address: str) -> str | None:
    """Why ``address`` is not a public internet address (None when it is one)."""
    ip: IPAddress = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        )
        if embedded is not None:
            return address_kind(str(embedded))
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "non-global"  # shared (carrier-grade NAT), documentation, benchmarking...
    return None


def parse_endpoint(text: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); ValueError naming ``what``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} {text!r} is not 'host:port'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


@dataclass(frozen=True)
class EgressPolicy:
    """What the sandbox may reach, from the SandboxConfig egress settings."""

    allowed_domains: tuple[str, ...]
    denied_domains: tuple[str, ...] = ()
    allowed_ports: frozenset[int] = frozenset({80, 443})
    read_only: bool = False
    pins: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, allowed: Iterable[str], denied: Iterable[str], ports: Iterable[int],
        methods: str, resolve: dict[str, str],
    ) -> EgressPolicy:
        """Build from the traits' values; ValueError naming the trait when one is malformed."""
        pins: dict[tuple[str, int], tuple[str, int]] = {}
        for key, value in resolve.items():
            host, port = parse_endpoint(key, "SandboxConfig.egress_resolve key")
            address, target_port = parse_endpoint(value, "SandboxConfig.egress_resolve value")
            name = normalize_host(host)
            if name is None or ip_literal(host):
                raise ValueError(f"SandboxConfig.egress_resolve key {key!r}: pin a host name")
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"SandboxConfig.egress_resolve value {value!r}: the target "
                                 "must be an IP address and port") from None
            pins[(name, port)] = (address, target_port)
        return cls(
            tuple(check_pattern(p, "allowed_domains") for p in allowed),
            tuple(check_pattern(p, "denied_domains") for p in denied),
            frozenset(ports), methods == "read-only", pins,
        )

    def check_request(self, method: str, host: str, port: int, tunnel: bool) -> Decision:
        """Judge a request by its target alone (before any name is resolved)."""
        name = normalize_host(host)
        if ip_literal(host):
            return Decision(False, "ip-literal", (
                f"{host} is an IP address, and addresses are never allowed: name the host in "
                "SandboxConfig.allowed_domains (and pin its address with "
                "SandboxConfig.egress_resolve if it has no DNS name)"))
        if name is None:
            return Decision(False, "host", f"{host!r} is not a valid host name")
        denied = _match(name, self.denied_domains)
        if denied is not None:
            return Decision(False, "denied_domains", (
                f"{name} matches {denied!r} in SandboxConfig.denied_domains, which wins over "
                "allowed_domains"))
        allowed = _match(name, self.allowed_domains)
        if allowed is None:
            return Decision(False, "allowed_domains", (
                f"{name} is not in SandboxConfig.allowed_domains "
                f"({', '.join(self.allowed_domains) or 'empty'}); add it there to allow it"))
        if port not in self.allowed_ports:
            ports = ", ".join(str(p) for p in sorted(self.allowed_ports))
            return Decision(False, "allowed_ports", (
                f"port {port} is not in SandboxConfig.allowed_ports ({ports}); add it there "
                "to allow it"))
        if self.read_only and tunnel:
            return Decision(False, "egress_methods", (
                "read-only egress cannot see the method inside an HTTPS tunnel, so CONNECT is "
                "refused; set SandboxConfig.egress_methods='all' to allow HTTPS"))
        if self.read_only and method not in READ_ONLY_METHODS:
            return Decision(False, "egress_methods", (
                f"{method} is not allowed: egress is read-only (GET and HEAD); set "
                "SandboxConfig.egress_methods='all' to allow it"))
        return Decision(True, f"allowed_domains: {allowed}")

    def pinned(self, host: str, port: int) -> tuple[str, int] | None:
        """The address ``egress_resolve`` pins ``host:port`` to, if any."""
        name = normalize_host(host)
        return None if name is None else self.pins.get((name, port))

    def check_addresses(self, host: str, port: int, addresses: list[str]) -> Decision:
        """Judge what an unpinned name resolved to: every address must be public."""
        for address in addresses:
            kind = address_kind(address)
            if kind is not None:
                return Decision(False, "address", (
                    f"{host} resolves to {address}, a {kind} address; only public addresses "
                    "are reached. To reach it on purpose, pin it: SandboxConfig.egress_resolve"
                    f" = {{'{host}:{port}': '{address}:{port}'}}"))
        return Decision(True, "address")


def check_pattern(pattern: str, trait: str) -> str:
    """A domain pattern in canonical form; ValueError naming the trait when malformed."""
    wildcard = pattern.startswith("*.")
    body = pattern[2:] if wildcard else pattern
    name = normalize_host(body)
    if name is None or ip_literal(body):
        raise ValueError(
            f"SandboxConfig.{trait}: {pattern!r} is not a domain name or '*.suffix' pattern"
            + (" (IP addresses cannot be listed: name the host and pin it with "
               "SandboxConfig.egress_resolve)" if ip_literal(body) else "")
        )
    return f"*.{name}" if wildcard else name


def _match(name: str, patterns: tuple[str, ...]) -> str | None:
    """The first pattern matching ``name``: exact, or ``*.suffix`` for names under suffix."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return pattern
        elif name == pattern:
            return pattern
    return None
