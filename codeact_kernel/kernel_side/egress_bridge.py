"""Inside the sandbox: carry 127.0.0.1:PORT to the host's egress proxy socket.

Run by the launch command, in the sandbox, before the kernel, as
``python -I -S -c <this source> PORT SOCKET -- KERNEL_CMD...``: it binds the
port, leaves a detached process serving it, and execs the kernel. The port is
listening before the kernel's first line runs, the kernel's own Python state
(``%reset``, restarts of the process are new launches) cannot stop it, and it
needs nothing but the standard library. HTTP_PROXY and HTTPS_PROXY point here.

One thread, non-blocking sockets and a selector: a byte read on one side is
written to the other, and a side is read only while its peer has nothing
pending (back-pressure), so memory stays at one chunk per direction.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

CHUNK = 256 * 1024
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Link:
    """One client connection and its connection to the proxy socket."""

    def __init__(
        self, sel: selectors.BaseSelector, client: socket.socket, upstream: socket.socket
    ) -> None:
        self.sel = sel
        self.socks = [client, upstream]
        self.closed = False
        self.pending = [b"", b""]  # bytes waiting to be written to socks[i]
        self.eof = [False, False]  # socks[i] has no more to send
        self.masks = [0, 0]
        for sock in self.socks:
            sock.setblocking(False)
            # Room for a few chunks in flight: fewer partial sends, fewer wake-ups.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * CHUNK)
        self.update()

    def on_event(self, side: int, events: int) -> None:
        try:
            if events & WRITE:
                self.flush(side)
            if events & READ:
                self.read(side)
        except OSError:
            self.close()
            return
        self.update()

    def read(self, side: int) -> None:
        other = 1 - side
        data = self.socks[side].recv(CHUNK)
        if not data:
            self.eof[side] = True
            if not self.pending[other]:
                self.socks[other].shutdown(socket.SHUT_WR)
            return
        try:
            sent = self.socks[other].send(data)
        except BlockingIOError:
            sent = 0
        self.pending[other] = data[sent:]

    def flush(self, side: int) -> None:
        sent = self.socks[side].send(self.pending[side])
        self.pending[side] = self.pending[side][sent:]
        if not self.pending[side] and self.eof[1 - side]:
            self.socks[side].shutdown(socket.SHUT_WR)

    def update(self) -> None:
        if self.closed:
            return
        if all(self.eof) and not any(self.pending):
            self.close()
            return
        for side, sock in enumerate(self.socks):
            mask = 0
            if not self.eof[side] and not self.pending[1 - side]:
                mask |= READ
            if self.pending[side]:
                mask |= WRITE
            if mask != self.masks[side]:
                if not self.masks[side]:
                    self.sel.register(sock, mask, (self, side))
                elif mask:
                    self.sel.modify(sock, mask, (self, side))
                else:
                    self.sel.unregister(sock)
                self.masks[side] = mask

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side, sock in enumerate(self.socks):
            if self.masks[side]:
                self.sel.unregister(sock)
            sock.close()


def serve(listener: socket.socket, path: str) -> None:
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, READ, None)
    while True:
        for key, events in sel.select():
            if key.data is not None:
                link, side = key.data
                link.on_event(side, events)
                continue
            try:
                client, _ = listener.accept()
                # A response head and its body are separate writes: no Nagle delay between.
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.settimeout(5)
                upstream.connect(path)
            except OSError:
                # No proxy (the session is ending): the client sees its connection close.
                upstream.close()
                client.close()
                continue
            Link(sel, client, upstream)


def main(argv: list[str]) -> None:
    port, path, separator, command = int(argv[0]), argv[1], argv[2], argv[3:]
    if separator != "--" or not command:
        sys.exit("usage: egress_bridge PORT SOCKET -- KERNEL_CMD...")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
    except OSError as exc:
        sys.exit(f"codeact egress bridge: cannot listen on 127.0.0.1:{port}: {exc}; "
                 "configure another SandboxConfig.egress_proxy_port")
    child = os.fork()
    if child == 0:
        # Detached twice, so that the bridge is the sandbox init's child, not the kernel's.
        if os.fork() == 0:
            os.setsid()
            try:
                serve(listener, path)
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    listener.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
