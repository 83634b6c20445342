"""One execute in flight: read its iopub and its reply, and decide when it is over.

Every wait has a bound. The cell is over when both its reply and its idle status
arrived; it is interrupted at its deadline, or as soon as it floods (it produced as
much again as its output budget allows after the budget ran out); if it will not
stop within the grace, the session restarts the kernel. A connection that libzmq
dropped (a message over the size limit), or a gateway backlog that dropped its oldest
messages, loses messages: the cell is over when the other channel says so, and a
restart settles it when both were lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..errors import SessionClosed
from .client import BoundedKernelClient
from .manager import DroppingChannels
from .outputs import OutputCollector
from .stdin import InputClock

POLL_INTERVAL = 0.1
# The longest stretch the iopub reader runs without letting the event loop breathe:
# a backlog of ready messages never awaits anything that suspends.
YIELD_EVERY = 0.02
# After iopub was lost, how long the idle status gets to follow the reply.
IDLE_AFTER_LOSS = 1.0


@dataclass
class Verdict:
    """How an execute ended: ``kind`` is done, interrupted, stuck, died or lost;
    ``flood`` says the interrupt was for a flood, not the deadline; ``lost`` names the
    channels whose connection dropped meanwhile, ``reopened`` those already re-made."""

    kind: str
    flood: bool = False
    lost: set[str] = field(default_factory=set)
    reopened: set[str] = field(default_factory=set)  # already re-made during the execute

    def why_stopped(self, limit: float) -> str:
        if self.flood:
            return ("output flood: the cell went on producing output past its limits "
                    "(KernelSession.interrupt_on_flood)")
        return f"timed out after {limit:g}s"

    def lost_note(self, cause: str) -> str:
        """``cause``: why the channels lose messages (the channels' ``loss_cause()``)."""
        if not self.lost:
            return ""
        return f"messages from the kernel were lost on {', '.join(sorted(self.lost))}: {cause}"


class InFlight:
    """Reads one execute's messages into ``collector`` and supervises it."""

    def __init__(
        self, channels: Callable[[], Any], collector: OutputCollector, *,
        alive: Callable[[], Awaitable[bool]], interrupt: Callable[[], Awaitable[None]],
        grace: float, stop_floods: bool,
    ) -> None:
        self._channels = channels
        self.collector = collector
        self.alive = alive
        self.interrupt = interrupt
        self.grace = grace
        self.stop_floods = stop_floods
        self.lost: set[str] = set()
        self.reopened: set[str] = set()
        self._pump: asyncio.Future[None] | None = None
        self._reply: asyncio.Future[None] | None = None
        self._replied_at: float | None = None
        self._both_lost_at: float | None = None

    async def run(self, deadline: float, clock: InputClock) -> Verdict:
        """Until the cell is over (see the module's docstring); nothing left reading."""
        self._pump = asyncio.ensure_future(self.pump_iopub())
        self._reply = asyncio.ensure_future(self.await_reply())
        try:
            return await self._supervise(deadline, clock)
        finally:
            for task in (self._pump, self._reply):
                task.cancel()
            await asyncio.gather(self._pump, self._reply, return_exceptions=True)

    @property
    def kc(self) -> Any:
        """The session's channels; SessionClosed once its manager has shut down."""
        return self._channels()

    async def pump_iopub(self) -> None:
        """Until the cell's idle status (parsing only what the collector wants)."""
        breathed = time.monotonic()
        while not self.collector.idle:
            msg = await self.next_message("iopub")
            if msg is not None:
                self.collector.handle(msg)
            if time.monotonic() - breathed > YIELD_EVERY:
                await asyncio.sleep(0)
                breathed = time.monotonic()

    async def await_reply(self) -> None:
        while True:
            msg = await self.next_message("shell")
            if msg is not None and self.collector.take_reply(msg):
                return

    async def next_message(self, channel: str) -> dict[str, Any] | None:
        """The next message of the cell on ``channel``; None for one that does not parse
        or that the collector does not want (read unparsed where the client can).

        Only a bad message is skipped. A session shut down under the cell (Ctrl-C in
        ``codeact run``, a lost kernel) ends it with SessionClosed: read as one more
        bad message it would make the reader spin forever without yielding.
        """
        kc = self.kc
        try:
            if channel == "shell":
                msg: dict[str, Any] = await kc.get_shell_msg()
                return msg
            if isinstance(kc, BoundedKernelClient):
                return await kc.read_iopub(self.collector.wants)
            msg = await kc.get_iopub_msg()
            return msg
        except zmq.ZMQError:
            raise  # the channel itself broke: a host failure, not a bad message
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or getattr(task, "cancelling", lambda: 1)():
                raise  # this task was cancelled (the cell is over, or the run was stopped)
            # The poll is cancelled from inside when its socket is closed.
            raise SessionClosed("the kernel session was shut down while the cell ran") from None
        except Exception as exc:  # a signed frame that does not parse (deep JSON...)
            self.collector.reject(f"unreadable {channel} message: {type(exc).__name__}: {exc}")
            return None

    async def _supervise(self, deadline: float, clock: InputClock) -> Verdict:
        assert self._pump is not None and self._reply is not None
        interrupted_at: float | None = None
        flood = False
        while True:
            done, _ = await asyncio.wait((self._pump, self._reply), timeout=POLL_INTERVAL)
            for task in done:
                task.result()  # a broken channel is a bug to surface, not a timeout
            if len(done) == 2:
                kind = "done" if interrupted_at is None else "interrupted"
                return self._verdict(kind, flood)
            if not await self.alive():
                return self._verdict("died", flood)
            await self._check_lost()
            if self._over_despite_loss():
                return self._verdict("lost", flood)
            now = time.monotonic()
            if interrupted_at is None and self.stop_floods and self.collector.budget.flooding:
                flood, interrupted_at = True, now
                await self.interrupt()
            elif interrupted_at is None and now >= deadline + clock.paused(now):
                interrupted_at = now
                await self.interrupt()
            elif interrupted_at is not None and now >= interrupted_at + self.grace:
                return self._verdict("stuck", flood)

    def _verdict(self, kind: str, flood: bool) -> Verdict:
        return Verdict(kind, flood, set(self.lost), set(self.reopened))

    async def _check_lost(self) -> None:
        kc = self.kc
        if isinstance(kc, BoundedKernelClient):
            await self._reopen_lost(kc)
        elif isinstance(kc, DroppingChannels):
            # A backlog that dropped loses messages as a dropped connection does (its
            # idle status may be among them), with nothing to re-open; what was dropped
            # counts against the budget, so a flood still ends at its flood interrupt.
            dropped = kc.take_dropped()
            self.lost |= set(dropped)
            if "iopub" in dropped:
                messages, size = dropped["iopub"]
                self.collector.budget.drop(size, messages)
        else:
            return
        if self._reply is not None and self._reply.done() and self._replied_at is None:
            self._replied_at = time.monotonic()
        if {"iopub", "shell"} <= self.lost and self._both_lost_at is None:
            self._both_lost_at = time.monotonic()

    async def _reopen_lost(self, kc: BoundedKernelClient) -> None:
        lost = kc.lost_channels()
        self.lost |= lost
        assert self._pump is not None
        if "iopub" in lost and not self._pump.done():
            # libzmq will not reconnect: re-open now, so the rest of the cell's output
            # (its end above all) is seen, and count the loss against the budget.
            # The message that broke the connection was at least the size limit.
            self.collector.budget.drop(kc.max_message_bytes)
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            await kc.reopen({"iopub"}, welcome=False)  # a flood: no greeting to await
            self.reopened.add("iopub")
            self._pump = asyncio.ensure_future(self.pump_iopub())

    def _over_despite_loss(self) -> bool:
        """Whether the end is known, or can never be, with a channel lost. With both
        lost nothing can tell when the cell ends: the session restarts the kernel, after
        ``grace`` for the liveness check to say whether the kernel died instead (a dying
        kernel drops every connection; an attached kernel's death shows in missed
        heartbeats only). With iopub lost, its idle status may have been the lost part:
        the reply decides, after a moment for the rest of the output."""
        assert self._pump is not None and self._reply is not None
        if self._both_lost_at is not None:
            return time.monotonic() - self._both_lost_at >= self.grace
        if "shell" in self.lost and self._pump.done():
            return True
        return ("iopub" in self.lost and self._replied_at is not None
                and time.monotonic() - self._replied_at > IDLE_AFTER_LOSS)
