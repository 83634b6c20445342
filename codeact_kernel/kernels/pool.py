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

Each waiting kernel is a started SandboxKernelManager (``prestart`` on the pool's
loop); a session takes one through a PooledKernelManager, which ``attach``es it.

The pool's thread outlives ``close()`` while a kernel it launched still runs:
bwrap's ``--die-with-parent`` is a PR_SET_PDEATHSIG, which fires when the
*thread* that forked the process exits, so the thread must not end under a
kernel that a session is still using.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import subprocess
import threading
import time
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from jupyter_core.utils import run_sync
from traitlets import Float, Instance, Int, Unicode, default
from traitlets.config import Configurable

from ..errors import KernelStartError, SessionClosed
from ..sandbox.cgroups import Counters
from ..sandbox.config import SandboxConfig
from .local import SandboxKernelManager
from .manager import KernelChannels, SessionKernelManager
from .session import KernelSession

T = TypeVar("T")
TAKE_ATTEMPTS = 3
LINGER_POLL = 0.5


class KernelPool(Configurable):
    """Pre-started sandboxed kernels, refilled in the background, each handed out once.

    The pool hands out started :class:`SandboxKernelManager` objects (``async_take``);
    sessions take them through a :class:`PooledKernelManager`. ``acquire()`` returns a
    started session; ``session()`` an unstarted one whose every start takes a fresh
    kernel (what ``Agent(pool=...)`` uses). Kernels are launched with the pool's
    ``sandbox`` and ``runtime_dir``, and KernelSession's configured work_dir and
    startup_timeout.
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
        self._ready: deque[SandboxKernelManager] = deque()
        self._waiters: deque[asyncio.Future[SandboxKernelManager]] = deque()
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

    def manager(self, parent: Any = None) -> PooledKernelManager:
        """An unstarted kernel manager whose every start takes a fresh kernel from here."""
        return PooledKernelManager(pool=self, parent=parent if parent is not None else self)

    def session(self, **kwargs: Any) -> KernelSession:
        """An unstarted session whose every start takes a fresh kernel from this pool
        (``kwargs`` are its traits, e.g. startup_code)."""
        kwargs.setdefault("parent", self)
        session = KernelSession(**kwargs)
        session.manager = self.manager(parent=session)
        return session

    async def async_acquire(self, **kwargs: Any) -> KernelSession:
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

    async def async_take(self) -> SandboxKernelManager:
        """A started kernel, channels not yet open, for a session's manager to adopt."""
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

    def _give_back(self, future: concurrent.futures.Future[SandboxKernelManager]) -> None:
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
        # The settings a session configured here would start its own kernel with.
        settings = KernelSession(parent=self)
        kernel = SandboxKernelManager(parent=self, sandbox=self.sandbox)
        try:
            await kernel.prestart(runtime_dir=Path(self.runtime_dir or settings.runtime_dir),
                                  work_dir=settings.work_dir, timeout=settings.startup_timeout)
        except asyncio.CancelledError:
            # close() cancels launches in flight: the half-started kernel's process and
            # session folder go with it, or they outlive the pool.
            await kernel.shutdown_kernel()
            raise
        except Exception as exc:  # handed to a taker, and kept as last_error
            await kernel.shutdown_kernel()
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
            await kernel.shutdown_kernel()
        else:
            self._deliver(kernel)

    def _deliver(self, kernel: SandboxKernelManager) -> None:
        if self._closed:
            self._discard(kernel)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(kernel)
                return
        self._ready.append(kernel)

    async def _take(self) -> SandboxKernelManager:
        if self._closed:
            raise SessionClosed("the kernel pool is closed")
        while self._ready:
            kernel = self._ready.popleft()
            if kernel.process_running():
                asyncio.get_running_loop().call_later(self.refill_delay, self._fill)
                return kernel
            self._replace(kernel)
        waiter: asyncio.Future[SandboxKernelManager] = asyncio.get_running_loop().create_future()
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

    def _replace(self, kernel: SandboxKernelManager) -> None:
        self.replaced += 1
        self._discard(kernel)
        self._fill()

    def _discard(self, kernel: SandboxKernelManager) -> None:
        task = asyncio.ensure_future(kernel.shutdown_kernel())
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.check_interval)
            for kernel in [k for k in self._ready if not k.process_running()]:
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


class PooledKernelManager(SessionKernelManager):
    """A local sandbox taken, already started, from a :class:`KernelPool`.

    Every start takes a fresh kernel, and shutdown kills it: kernels never go back
    to the pool. How the kernel is launched (sandbox, work folder, Python) is the
    pool's configuration; the session's runtime_dir and work_dir do not apply.
    """

    shares_work_folder = True
    tools_over_stdin = False

    pool = Instance(KernelPool, help="The pool the kernels come from.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel: SandboxKernelManager | None = None

    def clone(self, parent: Any = None) -> PooledKernelManager:
        return PooledKernelManager(pool=self.pool, parent=parent or self.parent)

    def _require(self) -> SandboxKernelManager:
        if self.kernel is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        return self.kernel

    @property
    def has_kernel(self) -> bool:
        return self.kernel is not None

    @property
    def channels(self) -> KernelChannels:
        return self._require().channels

    @property
    def kernel_work_dir(self) -> str | None:
        return self.kernel.kernel_work_dir if self.kernel is not None else None

    @property
    def handoff_dir(self) -> Path | None:
        return self.kernel.handoff_dir if self.kernel is not None else None

    async def start_kernel(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        for attempt in range(1, TAKE_ATTEMPTS + 1):
            try:
                await self._take_and_attach(timeout)
                return
            except KernelStartError:
                # A kernel can die between the pool's liveness check and the
                # attach; the next one in the pool is as good.
                await self.shutdown_kernel()
                if attempt == TAKE_ATTEMPTS:
                    raise

    async def _take_and_attach(self, timeout: float) -> None:
        kernel = self.kernel = await self.pool.async_take()
        self.session_dir, self.work_path = kernel.session_dir, kernel.work_path
        self.isolation, self.egress = list(kernel.isolation), kernel.egress
        await kernel.attach(timeout)  # on this loop: the sockets belong to it

    async def is_alive(self) -> bool:
        return self.kernel is not None and await self.kernel.is_alive()

    async def interrupt_kernel(self) -> None:
        await self._require().interrupt_kernel()

    async def restart_kernel(self, *, timeout: float) -> None:
        await self._require().restart_kernel(timeout=timeout)

    async def shutdown_kernel(self) -> None:
        kernel, self.kernel = self.kernel, None
        self.session_dir = self.work_path = self.egress = None
        if kernel is not None:
            await kernel.shutdown_kernel()

    def counters(self) -> Counters:
        return self._require().counters()

    def death_cause(self, before: Counters) -> str:
        return self._require().death_cause(before)

    def exhausted_limit(self, before: Counters) -> str | None:
        return self._require().exhausted_limit(before)

    def log_tail(self, lines: int = 30) -> str:
        return self.kernel.log_tail(lines) if self.kernel is not None else ""
