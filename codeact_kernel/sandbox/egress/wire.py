"""HTTP/1.1 and TLS as the egress proxy reads them: heads, body framing, the SNI.

Everything here parses bytes written by the sandbox (or by a server it asked
for), so every reader is bounded and strict: a head that is not plainly valid
is refused rather than repaired, and a body is framed exactly one way (two
framings at once is how requests are smuggled past a proxy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .channel import Channel, Counter

MAX_HEAD = 64 * 1024
MAX_HELLO = 64 * 1024
MAX_LINE = 4096
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TARGET = re.compile(r"^[\x21-\x7e]+$")
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00\r\n]")
_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
# Headers about one hop, never forwarded; the proxy frames its own connections.
HOP_BY_HOP = frozenset({
    "connection", "proxy-connection", "keep-alive", "proxy-authorization",
    "proxy-authenticate", "te", "trailer", "upgrade",
})  # fmt: skip


class WireError(Exception):
    """Bytes that are not a valid HTTP head, body or TLS ClientHello."""


@dataclass
class Head:
    """A request or status line split in three, and the header fields in order."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


@dataclass
class Target:
    """Where a request goes: ``path`` is the origin-form for plain HTTP, "" for CONNECT."""

    host: str
    port: int
    path: str
    tunnel: bool


def parse_head(raw: bytes, request: bool) -> Head:
    """Parse a head (up to and including the blank line)."""
    if len(raw) > MAX_HEAD:
        raise WireError(f"head longer than {MAX_HEAD} bytes")
    lines = raw.decode("latin-1").split("\r\n")
    if lines[-2:] != ["", ""]:
        raise WireError("head does not end with an empty line")
    parts = lines[0].split(" ", 2)
    if len(parts) != 3:
        raise WireError("malformed start line")
    if request and (not _TOKEN.match(parts[0]) or parts[2] not in _VERSIONS
                    or not _TARGET.match(parts[1])):
        raise WireError("malformed request line")
    if not request and (parts[0] not in _VERSIONS or not re.match(r"^[1-9][0-9]{2}$", parts[1])):
        raise WireError("malformed status line")
    headers = []
    for line in lines[1:-2]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name) or _FORBIDDEN_IN_VALUE.search(value):
            raise WireError(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip(" \t")))
    return Head((parts[0], parts[1], parts[2]), headers)


def request_target(head: Head) -> Target:
    """The target of a proxy request: CONNECT host:port, or an absolute http:// URL."""
    method, target, _ = head.start
    if method == "CONNECT":
        host, sep, port_text = target.rpartition(":")
        if not sep or not port_text.isdigit() or not host or not 0 < int(port_text) < 65536:
            raise WireError("CONNECT needs host:port")
        return Target(host, int(port_text), "", True)
    if not target.lower().startswith("http://"):
        raise WireError("a proxy request needs an absolute http:// URL (HTTPS goes by CONNECT)")
    url = urlsplit(target)
    if "@" in url.netloc:
        raise WireError("credentials in the URL are not forwarded")
    try:
        port = url.port or 80
    except ValueError as exc:
        raise WireError(str(exc)) from None
    if not url.hostname:
        raise WireError("the URL names no host")
    path = url.path or "/"
    return Target(url.hostname, port, path + (f"?{url.query}" if url.query else ""), False)


def authority(target: Target) -> str:
    return target.host if target.port == 80 else f"{target.host}:{target.port}"


def forwarded_request(head: Head, target: Target) -> bytes:
    """The head sent upstream: origin-form, our Host, one request per connection."""
    hosts = head.values("host")
    expected = {target.host.lower(), f"{target.host.lower()}:{target.port}"}
    if len(hosts) > 1 or (hosts and hosts[0].lower() not in expected):
        raise WireError("the Host header names another host than the URL")
    method, _, version = head.start
    lines = [f"{method} {target.path} {version}", *_end_to_end(head), f"Host: {authority(target)}",
             "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def forwarded_response(head: Head) -> bytes:
    version, status, reason = head.start
    lines = [f"{version} {status} {reason}", *_end_to_end(head), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _end_to_end(head: Head) -> list[str]:
    named = {t.strip().lower() for v in head.values("connection") for t in v.split(",")}
    skip = HOP_BY_HOP | named | {"host"}
    return [f"{k}: {v}" for k, v in head.headers if k.lower() not in skip]


def body_length(head: Head, *, request: bool, method: str = "") -> int | None:
    """Bytes of body that follow ``head``: a count, -1 for chunked, None for "until EOF"."""
    codings = [t.strip().lower() for v in head.values("transfer-encoding") for t in v.split(",")]
    lengths = set(head.values("content-length"))
    if not request:
        status = int(head.start[1])
        if method == "HEAD" or status < 200 or status in (204, 304):
            return 0
    if codings:
        if codings != ["chunked"] or lengths:
            raise WireError("only a plain chunked transfer coding, without Content-Length")
        return -1
    if len(lengths) > 1 or any(not v.isdigit() for v in lengths):
        raise WireError("conflicting or malformed Content-Length")
    if lengths:
        return int(lengths.pop())
    return 0 if request else None


async def copy_body(
    src: Channel, dst: Channel, length: int | None, count: Counter, timeout: float
) -> None:
    """Copy one body framed by ``length`` (see body_length), counting every byte."""
    if length == -1:
        await _copy_chunked(src, dst, count, timeout)
    elif length != 0:
        await src.relay_to(dst, length, count, timeout)


async def _copy_chunked(src: Channel, dst: Channel, count: Counter, timeout: float) -> None:
    while True:
        line = await src.read_until(b"\r\n", MAX_LINE, timeout)
        size_text = line.split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_text):
            raise WireError("malformed chunk size")
        count(len(line))
        dst.write(line)
        size = int(size_text, 16)
        if size == 0:
            break
        await src.relay_to(dst, size, count, timeout)
        crlf = await src.read_exactly(2, timeout)
        if crlf != b"\r\n":
            raise WireError("chunk not followed by CRLF")
        count(2)
        dst.write(crlf)
    while True:  # trailer fields, then the empty line
        line = await src.read_until(b"\r\n", MAX_LINE, timeout)
        count(len(line))
        dst.write(line)
        if line == b"\r\n":
            return


async def read_client_hello(src: Channel, timeout: float) -> tuple[bytes, str]:
    """Read the TLS records holding the ClientHello; return them raw and the SNI name."""
    raw = bytearray()
    handshake = bytearray()
    while len(handshake) < 4 or len(handshake) < 4 + int.from_bytes(handshake[1:4], "big"):
        header = await src.read_exactly(5, timeout)
        if header[0] != 22:
            raise WireError("the tunnel does not start with a TLS handshake")
        size = int.from_bytes(header[3:5], "big")
        body = await src.read_exactly(size, timeout)
        raw += header + body
        handshake += body
        if len(raw) > MAX_HELLO:
            raise WireError("TLS ClientHello too large")
    if handshake[0] != 1:
        raise WireError("the first TLS handshake message is not a ClientHello")
    return bytes(raw), _sni(bytes(handshake[4:4 + int.from_bytes(handshake[1:4], "big")]))


def _sni(hello: bytes) -> str:
    try:
        pos = 2 + 32  # version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + int.from_bytes(hello[pos:pos + 2], "big")  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = pos + 2 + int.from_bytes(hello[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(hello[pos:pos + 2], "big")
            size = int.from_bytes(hello[pos + 2:pos + 4], "big")
            data = hello[pos + 4:pos + 4 + size]
            if kind == 0 and len(data) >= 5 and data[2] == 0:
                name_len = int.from_bytes(data[3:5], "big")
                return data[5:5 + name_len].decode("ascii")
            pos += 4 + size
    except (IndexError, UnicodeDecodeError):
        raise WireError("malformed TLS ClientHello") from None
    return ""
