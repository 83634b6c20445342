"""Interrupts as messages: confirmed by the kernel's reply, a deaf reader nudged once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from jupyter_client.session import Session

from codeact_kernel.kernels.local import SandboxKernelManager
from codeact_kernel.kernels.session import KernelSession
from codeact_kernel.sandbox.interrupt import NUDGE_AFTER, send_interrupt_request

KEY = b"a-test-key"
HANG_BOUND = 30.0


class ControlPeer:
    """A control socket that reads like a kernel whose reader missed a wake-up: the
    first request is answered only once a second message has arrived ("wakes"), never
    ("deaf"), with a reply signed by another key ("forges"), or with a signed reply of
    a megabyte ("bloats")."""

    def __init__(self, endpoint: str, mode: str) -> None:
        self.endpoint, self.mode = endpoint, mode
        self.session = Session(key=KEY)
        self.signer = Session(key=b"not-the-key" if mode == "forges" else KEY)
        self.received: list[str] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.bind(self.endpoint)
        self.ready.set()
        pending: list[tuple[list[bytes], dict[str, object]]] = []
        try:
            while not self.stop.is_set():
                if not sock.poll(50):
                    continue
                idents, frames = self.session.feed_identities(sock.recv_multipart())
                msg = self.session.deserialize(frames)
                self.received.append(msg["msg_type"])
                pending.append((idents, msg))
                if len(pending) == 2 and self.mode != "deaf":
                    first_idents, first = pending[0]
                    content = {"status": "ok", "pad": "x" * 2**20 if self.mode == "bloats"
                               else ""}
                    self.signer.send(sock, "interrupt_reply", content,
                                     parent=first, ident=first_idents)
        finally:
            ctx.destroy(linger=0)


@pytest.fixture
def peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlPeer]:
    server = ControlPeer(f"ipc://{tmp_path}/control", request.param)
    server.thread.start()
    assert server.ready.wait(HANG_BOUND)
    yield server
    server.stop.set()
    server.thread.join(HANG_BOUND)


@pytest.mark.parametrize("peer", ["wakes"], indirect=True)
def test_a_reader_that_missed_the_request_is_woken_without_a_second_interrupt(
    peer: ControlPeer,
) -> None:
    assert send_interrupt_request(peer.endpoint, KEY, "hmac-sha256", timeout=HANG_BOUND)
    # The nudge is a kernel_info_request: a second interrupt_request would raise
    # KeyboardInterrupt twice once both were read.
    assert peer.received == ["interrupt_request", "kernel_info_request"]


@pytest.mark.parametrize("peer", ["deaf"], indirect=True)
def test_a_kernel_that_never_answers_is_given_up_on_at_the_timeout(peer: ControlPeer) -> None:
    began = time.monotonic()
    assert not send_interrupt_request(peer.endpoint, KEY, "hmac-sha256", timeout=2.5)
    assert 2.5 <= time.monotonic() - began < HANG_BOUND
    assert peer.received == ["interrupt_request", "kernel_info_request"]


@pytest.mark.parametrize("peer", ["forges"], indirect=True)
def test_a_reply_signed_with_another_key_is_no_confirmation(peer: ControlPeer) -> None:
    assert not send_interrupt_request(peer.endpoint, KEY, "hmac-sha256",
                                      timeout=NUDGE_AFTER + 1.5)
    assert peer.received == ["interrupt_request", "kernel_info_request"]


@pytest.mark.parametrize("peer", ["bloats"], indirect=True)
def test_an_oversized_reply_is_dropped_unread(peer: ControlPeer) -> None:
    # The kernel holds the key: its signed megabyte is refused by size, not read.
    assert not send_interrupt_request(peer.endpoint, KEY, "hmac-sha256",
                                      timeout=NUDGE_AFTER + 1.5)
    assert peer.received[:2] == ["interrupt_request", "kernel_info_request"]


def test_the_sandboxed_kernel_confirms_and_the_cell_stops(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, str | None, bool]:
        async with KernelSession(runtime_dir=str(tmp_path), timeout=60) as session:
            started = asyncio.Event()
            running = asyncio.ensure_future(session.async_execute(
                "import time; print('started', flush=True); time.sleep(600)",
                on_output=lambda output: started.set(),
            ))
            await asyncio.wait_for(started.wait(), timeout=HANG_BOUND)
            manager = session.manager
            assert isinstance(manager, SandboxKernelManager) and manager.km is not None
            info = manager.km.get_connection_info()
            endpoint = f"ipc://{info['ip']}-{info['control_port']}"
            confirmed = await asyncio.get_running_loop().run_in_executor(
                None, send_interrupt_request, endpoint, manager.km.session.key,
                info["signature_scheme"], HANG_BOUND,
            )
            result = await running
            name = result.error.ename if result.error is not None else None
            return confirmed, name, result.timed_out

    confirmed, error, timed_out = asyncio.run(scenario())
    assert confirmed and error == "KeyboardInterrupt" and not timed_out
