"""The tool socket's door: the session token checked in the ZMQ handshake.

The socket must be reachable by the sandbox's uid, so other users of the host can
reach it too. With the token as a ZMQ PLAIN password, checked by this ZAP handler,
a peer without it is turned away during the handshake, before libzmq reads (and
buffers) a single message from it: a burst of large frames from peers without the
token costs the host nothing. The kernel holds the token, so what the kernel itself
sends is bounded by the socket's MAXMSGSIZE and the server's checks instead.
"""

from __future__ import annotations

import hmac

import zmq

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP specification (RFC 27)
ZAP_VERSION = b"1.0"
DOMAIN = b"codeact-tools"
USERNAME = b"codeact"
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class TokenGate:
    """A ZAP handler admitting PLAIN peers whose password is ``token``."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], token: str) -> None:
        self.token = token.encode()
        self.refused = 0  # handshakes that failed: a wrong token, or none at all
        self.socket: zmq.Socket[bytes] = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self.monitor: zmq.Socket[bytes] | None = None

    def guard(self, server: zmq.Socket[bytes]) -> None:
        """Make ``server`` (not yet bound) ask this gate about every new peer."""
        server.setsockopt(zmq.PLAIN_SERVER, 1)
        server.setsockopt(zmq.ZAP_DOMAIN, DOMAIN)
        # A peer without PLAIN at all fails before the gate is asked: count it here.
        self.monitor = server.get_monitor_socket(HANDSHAKE_FAILED)

    def count_refusals(self) -> None:
        assert self.monitor is not None
        while True:
            try:
                self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.refused += 1

    def answer(self) -> None:
        """Answer the pending authentication requests."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            request_id = request[1] if len(request) > 1 else b""
            ok = (len(request) == 8 and request[0] == ZAP_VERSION and request[5] == b"PLAIN"
                  and hmac.compare_digest(request[7], self.token))
            status = (b"200", b"OK") if ok else (b"400", b"bad token")
            self.socket.send_multipart([ZAP_VERSION, request_id, *status, b"", b""])

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close(0)
        self.socket.close(0)

