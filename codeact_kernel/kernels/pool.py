"""A warm pool of pre-started sandboxed kernels, each handed out once.

Starting a sandboxed kernel costs about 0.6 s, nearly all of it ipykernel's own
start-up; taking one that is already running costs milliseconds. A kernel is
never reused: the pool hands each one out once, and a session that shuts down
kills its kernel. Only the process start is paid ahead of time.

Loops and threads. jupyter_client's async sockets belong to the event loop that
made them, and the loop that takes a kernel (a per-thread loop of the sync API,
the magic's own thread, a sub-agent's worker) is rarely the loop that started
it. So the pool, on its own thread and loop, only launches the kernel process
and proves it answers on the shell channel, then closes that client; the
session that takes the kernel opens its own channels on its own loop.

The pool's thread outlives ``close()`` while a kernel it launched still runs:
bwrap's ``--die-with-parent`` is a PR_SET_PDEATHSIG, which fires when the
*thread* that forked the process exits, so the thread must not end under a
kernel that a session is still using.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from traitlets import Float, Instance, Int, Unicode, default
from traitlets.config import Configurable

from ..errors import KernelStartError, SessionClosed
from ..sandbox.config import SandboxConfig
from .session import KernelSession

T = TypeVar("T")
# ipykernel greets each new iopub subscriber within milliseconds; a kernel that
# does not (older ipykernel) falls back to jupyter_client's readiness check.
WELCOME_WAIT = 1.0
TAKE_ATTEMPTS = 3
LINGER_POLL = 0.5


class _WarmKernel(KernelSession):
    """A kernel launched ahead of demand: no client is kept, no startup code is run."""

    async def _launch(self) -> None:
        await self._launch_process()
        await self._answer_on_shell()
        assert self.km is not None
        # Made on this loop by start_kernel; the taker's loop makes its own on demand.
        self.km._close_control_socket()

    async def _answer_on_shell(self) -> None:
        """Wait for a kernel_info_reply on a shell-only client.

        No iopub subscription is made here: ipykernel's XPUB greets a subscriber
        only when it is the first, and the taker's greeting is how it knows its
        own subscription is live.
        """
        assert self.km is not None
        kc = self.km.client()
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                kc.kernel_info()
                resend = time.monotonic() + 2.0
                while time.monotonic() < min(resend, deadline):
                    try:
                        msg = await kc.get_shell_msg(timeout=0.25)
                    except queue.Empty:
                        if not await self.km.is_alive():
                            raise KernelStartError(
                                "the kernel exited while starting", self.log_tail()
                            ) from None
                        continue
                    if msg["msg_type"] == "kernel_info_reply":
                        return
            raise KernelStartError(
                f"kernel did not answer within {self.startup_timeout:g}s", self.log_tail()
            )
        finally:
            kc.stop_channels()

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        if self.km is None or self.km.provisioner is None:
            return None
        process: subprocess.Popen[bytes] | None = getattr(self.km.provisioner, "process", None)
        return process

    def alive(self) -> bool:
        process = self.process
        return process is not None and process.poll() is None


class KernelPool(Configurable):
    """Pre-started sandboxed kernels, refilled in the background, each handed out once.

    ``acquire()`` returns a started :class:`PooledSession`; ``session()`` an
    unstarted one whose every start takes a fresh kernel (what ``Agent(pool=...)``
    uses). Kernels are launched with the pool's ``sandbox`` and ``runtime_dir``.
    ``launched`` and ``replaced`` count kernels started and dead ones replaced.
    """

    size = Int(
        2,
        help="Kernels kept started and waiting. Each costs one idle kernel's memory (about "
        "55 MB) while it waits. 0 keeps none: every acquire starts its own kernel.",
    ).tag(config=True)
    check_interval = Float(
        1.0, help="Seconds between liveness checks of waiting kernels; a dead one is replaced."
    ).tag(config=True)
    retry_delay = Float(
        5.0,
        help="Seconds the background refill pauses after a kernel failed to start, so that "
        "a broken sandbox is not retried in a loop (an acquire still tries at once).",
    ).tag(config=True)
    refill_delay = Float(
        0.2,
        help="Seconds between handing a kernel out and launching its replacement, so that "
        "the launch (CPU-heavy) does not slow the taker's first steps.",
    ).tag(config=True)
    runtime_dir = Unicode(
        "",
        help="Host folder for the pooled kernels' session folders. Empty means "
        "KernelSession.runtime_dir.",
    ).tag(config=True)
    sandbox = Instance(SandboxConfig, help="Isolation and limits of the pooled kernels.")

    @default("sandbox")
    def _default_sandbox(self) -> SandboxConfig:
        return SandboxConfig(parent=self)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        # Touched only on the pool's loop.
        self._ready: deque[_WarmKernel] = deque()
        self._waiters: deque[asyncio.Future[_WarmKernel]] = deque()
        self._launching: set[asyncio.Task[None]] = set()
        self._discarding: set[asyncio.Task[None]] = set()
        self._forked: list[subprocess.Popen[bytes]] = []
        self._paused_until = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._lingering: asyncio.Task[None] | None = None
        self.launched = 0
        self.replaced = 0

    # ---- public API ------------------------------------------------------------------

    @property
    def ready(self) -> int:
        """Kernels started and waiting to be taken."""
        return len(self._ready)

    def start(self) -> KernelPool:
        """Start the pool's thread and begin filling (acquire does this on first use)."""
        with self._lock:
            if self._closed:
                raise SessionClosed("the kernel pool is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._loop,), name="codeact-pool", daemon=True
                )
                self._thread.start()
                self._call_soon(self._begin)
                # Waiting kernels would otherwise die with the interpreter's threads and
                # leave their folders and cgroups to the next start's sweep.
                atexit.register(self.close)
        return self

    def session(self, **kwargs: Any) -> PooledSession:
        """An unstarted session whose every start takes a fresh kernel from this pool."""
        kwargs.setdefault("parent", self)
        return PooledSession(pool=self, **kwargs)

    async def async_acquire(self, **kwargs: Any) -> PooledSession:
        """A fresh, started session (``kwargs`` are its traits, e.g. startup_code)."""
        session = self.session(**kwargs)
        await session.async_start()
        return session

    acquire = run_sync(async_acquire)

    def wait_filled(self, timeout: float = 60.0) -> bool:
        """Block until ``size`` kernels are waiting (benchmarks, tests); False on timeout."""
        self.start()
        deadline = time.monotonic() + timeout
        while self.ready < self.size:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def async_take(self) -> _WarmKernel:
        """A started kernel for a session to adopt (used by PooledSession)."""
        self.start()
        future = self._submit(self._take())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The taker gave up: a kernel that was already on its way goes back, unused.
            future.add_done_callback(self._give_back)
            raise

    async def async_close(self) -> None:
        """Shut every waiting kernel down; sessions already handed out keep theirs."""
        if self._mark_closed():
            await asyncio.wrap_future(self._submit(self._close()))

    def close(self) -> None:
        """Shut every waiting kernel down; sessions already handed out keep theirs."""
        if self._mark_closed():
            self._submit(self._close()).result()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """After close(), block until the pool's thread has ended: it outlives close()
        until the kernels it launched have exited. False on timeout."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _mark_closed(self) -> bool:
        """Refuse new takers; True when the pool's thread has kernels to shut down."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            if self._loop is None:
                return False
        atexit.unregister(self.close)
        return True

    def __enter__(self) -> KernelPool:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> KernelPool:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.async_close()

    # ---- the pool's thread ------------------------------------------------------------

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call_soon(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop has ended, which it does only once every kernel it forked is gone

    def _give_back(self, future: concurrent.futures.Future[_WarmKernel]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._call_soon(self._deliver, future.result())

    # ---- on the pool's loop -----------------------------------------------------------

    def _begin(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())
        self._fill()

    def _fill(self) -> None:
        """Launch enough kernels for the pool's size and for every waiting taker."""
        if self._closed:
            return
        target = len(self._waiters)
        if time.monotonic() >= self._paused_until:
            target += self.size
        for _ in range(target - len(self._ready) - len(self._launching)):
            task = asyncio.ensure_future(self._launch_one())
            self._launching.add(task)
            task.add_done_callback(self._launching.discard)

    async def _launch_one(self) -> None:
        kernel = _WarmKernel(parent=self, sandbox=self.sandbox, **self._session_traits())
        try:
            await kernel.async_start()
        except Exception as exc:  # handed to a taker, and kept as last_error
            self.last_error = exc
            self._paused_until = time.monotonic() + self.retry_delay
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                    break
            return
        self.launched += 1
        if kernel.process is not None:
            self._forked.append(kernel.process)
        if self._closed:
            await kernel.async_shutdown()
        else:
            self._deliver(kernel)

    def _session_traits(self) -> dict[str, Any]:
        return {"runtime_dir": self.runtime_dir} if self.runtime_dir else {}

    def _deliver(self, kernel: _WarmKernel) -> None:
        if self._closed:
            self._discard(kernel)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(kernel)
                return
        self._ready.append(kernel)

    async def _take(self) -> _WarmKernel:
        if self._closed:
            raise SessionClosed("the kernel pool is closed")
        while self._ready:
            kernel = self._ready.popleft()
            if kernel.alive():
                asyncio.get_running_loop().call_later(self.refill_delay, self._fill)
                return kernel
            self._replace(kernel)
        waiter: asyncio.Future[_WarmKernel] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._fill()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._deliver(waiter.result())
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _replace(self, kernel: _WarmKernel) -> None:
        self.replaced += 1
        self._discard(kernel)
        self._fill()

    def _discard(self, kernel: _WarmKernel) -> None:
        task = asyncio.ensure_future(kernel.async_shutdown())
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.check_interval)
            for kernel in [k for k in self._ready if not k.alive()]:
                self._ready.remove(kernel)
                self._replace(kernel)
            self._forked = [p for p in self._forked if p.poll() is None]
            self._fill()

    async def _close(self) -> None:
        tasks = [t for t in [self._watcher, *self._launching] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(SessionClosed("the kernel pool is closed"))
        while self._ready:
            self._discard(self._ready.popleft())
        await asyncio.gather(*self._discarding, return_exceptions=True)
        self._lingering = asyncio.ensure_future(self._linger())

    async def _linger(self) -> None:
        """Keep this thread (and so the kernels it forked) alive while sessions use them."""
        while any(p.poll() is None for p in self._forked):
            await asyncio.sleep(LINGER_POLL)
        asyncio.get_running_loop().stop()


class PooledSession(KernelSession):
    """A KernelSession that takes an already-started kernel from a :class:`KernelPool`.

    Every start takes a fresh kernel, and shutdown kills it: kernels never go
    back to the pool. How the kernel is launched (sandbox, work folder, Python)
    is the pool's configuration; timeouts and startup code are this session's.
    """

    pool = Instance(KernelPool, help="The pool the kernels come from.")

    async def async_start(self) -> KernelSession:
        if self.km is not None:
            return self
        try:
            for attempt in range(1, TAKE_ATTEMPTS + 1):
                try:
                    await self._take_and_attach()
                    break
                except KernelStartError:
                    # A kernel can die between the pool's liveness check and the
                    # attach; the next one in the pool is as good.
                    await self.async_shutdown()
                    if attempt == TAKE_ATTEMPTS:
                        raise
            await self.async_run_startup_code()
        except BaseException:
            await self.async_shutdown()
            raise
        return self

    async def _take_and_attach(self) -> None:
        km = self._adopt(await self.pool.async_take())
        self.kc = km.client()  # on this loop: the sockets belong to it
        # No heartbeat thread: death is seen by polling the process we own. Its
        # start races a quick stop_channels in jupyter_client (it then spins
        # opening sockets until EMFILE).
        self.kc.start_channels(hb=False)
        await self._wait_subscribed()

    def _adopt(self, warm: _WarmKernel) -> AsyncKernelManager:
        km = warm.km
        assert km is not None
        self.km, self.session_dir, self._log = km, warm.session_dir, warm._log
        self._lease = warm._lease
        self.egress = warm.egress
        # The warm shell must never clean up what this session now owns.
        warm.km, warm.session_dir, warm._log = None, None, None
        warm._lease, warm.egress = None, None
        self.isolation = list(warm.isolation)
        self.sandbox, self.work_dir = warm.sandbox, warm.work_dir
        return km

    async def _wait_subscribed(self) -> None:
        """Return once iopub is live, so that no output of the first cell is lost."""
        deadline = time.monotonic() + WELCOME_WAIT
        while time.monotonic() < deadline:
            try:
                # The greeting (iopub_welcome) proves the subscription reached the kernel.
                await self.kc.get_iopub_msg(timeout=0.05)
                return
            except queue.Empty:
                if not await self.async_is_alive():
                    raise KernelStartError(
                        "the pooled kernel died before it was taken", self.log_tail()
                    ) from None
        await self._wait_for_ready("start")

