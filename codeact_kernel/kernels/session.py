"""One sandboxed kernel for one agent session, driven over the Jupyter protocol.

Async first; the sync API is derived with ``run_sync`` (the nbclient pattern).
Every wait has a bound: a cell that overruns is interrupted, then the kernel
is restarted if it will not stop, and a kernel that dies silently is noticed
by polling ``is_alive`` while waiting.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import zmq
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from traitlets import Enum, Float, Instance, Int, List, Unicode, default
from traitlets.config import Configurable

from ..errors import KernelStartError, SessionClosed
from ..sandbox.cgroups import Counters, death_cause, read_counters, release_cgroup
from ..sandbox.config import SandboxConfig
from ..sandbox.dirs import (
    default_runtime_dir,
    make_session_dir,
    remove_tree,
    sweep_stale_sessions,
)
from ..sandbox.egress import EgressProxy
from ..sandbox.workdir import WorkFolderLease
from .execution import ExecutionResult
from .outputs import OutputCollector
from .provisioner import SandboxProvisioner
from .stdin import (
    ApprovalHandler,
    InputClock,
    StdinAnswers,
    StdinHandler,
    ToolPromptHandler,
    pump_stdin,
)

OutputCallback = Callable[[NotebookNode], Any]
POLL_INTERVAL = 0.1
# sun_path is 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107
LOST = "ALL VARIABLES WERE LOST"


def blocking(name: str) -> Callable[..., Any]:
    """The sync form of the coroutine method ``name``, resolved on the instance."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return run_sync(getattr(self, name))(*args, **kwargs)

    method.__name__ = name.removeprefix("async_")
    method.__doc__ = f"Blocking form of :meth:`{name}`."
    return method


class KernelSession(Configurable):
    """A sandboxed IPython kernel owned by exactly one session.

    Use it as a context manager (``with`` or ``async with``); shutdown removes
    the session folder and the cgroups the session made.
    """

    sandbox = Instance(SandboxConfig, help="Isolation and limits of the kernel.")
    timeout = Float(
        60.0, help="Default wall-clock limit of one execute, in seconds."
    ).tag(config=True)
    interrupt_grace = Float(
        3.0,
        help="Seconds a cell gets to stop after an interrupt before the kernel is restarted.",
    ).tag(config=True)
    startup_timeout = Float(
        30.0, help="Seconds a new kernel gets to answer kernel_info."
    ).tag(config=True)
    max_cleared_outputs = Int(
        200,
        help="Outputs that clear_output() removed during one execute and that are still "
        "kept in the result (the trace puts them in the cell's metadata: the operator may "
        "have seen them). The first ones are kept; the rest are only counted.",
    ).tag(config=True)
    runtime_dir = Unicode(
        help="Host folder holding one sub-folder per session (connection file, ipc sockets)."
    ).tag(config=True)
    work_dir = Unicode(
        "",
        help="Writable work folder of the kernel (its HOME and cwd). Empty means a fresh "
        "folder inside the session folder, removed at shutdown.",
    ).tag(config=True)
    kernel_python = Unicode(
        sys.executable, help="Python interpreter that runs ipykernel inside the sandbox."
    ).tag(config=True)
    startup_code = List(
        Unicode(),
        help="Code run silently after every start, restart and reset (tool stubs, helpers).",
    ).tag(config=True)
    tool_transport = Enum(
        ["ipc", "stdin"],
        "ipc",
        help="How the kernel's tool stubs reach the host tools: 'ipc' (a ZMQ socket in the "
        "session folder: fastest, any thread) or 'stdin' (marked input requests on the "
        "Jupyter stdin channel: crosses gateways and containers, main thread only).",
    ).tag(config=True)

    @default("sandbox")
    def _default_sandbox(self) -> SandboxConfig:
        return SandboxConfig(parent=self)

    @default("runtime_dir")
    def _default_runtime_dir(self) -> str:
        return default_runtime_dir()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_dir: Path | None = None
        self.km: AsyncKernelManager | None = None
        self.kc: Any = None
        self.isolation: list[str] = []
        self.restarts = 0
        self._log: BinaryIO | None = None
        self._lease: WorkFolderLease | None = None
        # The host end of the sandbox's network egress (None without an allow-list).
        self.egress: EgressProxy | None = None
        # Answers tool prompts when tool_transport is "stdin" (set by the Agent).
        self.tool_handler: ToolPromptHandler | None = None
        # Decides on tool calls held for a human's approval (set by the Agent).
        self.approval_handler: ApprovalHandler | None = None
        # One cell at a time: concurrent callers would read each other's replies off the
        # shared channels, so they queue here, like cells queued in a notebook.
        self._execute_lock = asyncio.Lock()
        self._execute_owner: asyncio.Task[Any] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    @property
    def work_path(self) -> Path:
        assert self.session_dir is not None
        return Path(self.work_dir).resolve() if self.work_dir else self.session_dir / "work"

    @property
    def shares_work_folder(self) -> bool:
        """Whether the kernel sees ``work_path`` (the same filesystem as the host)."""
        return True

    @property
    def handoff_dir(self) -> Path | None:
        """Where the host hands the kernel files: a folder in the session folder, which the
        sandbox binds read-only, so the kernel reads what the host wrote there but can plant
        nothing in it. None (values then travel inline) for a kernel on another filesystem,
        or one not sandboxed, which could write anywhere the host can."""
        if not self.shares_work_folder or self.sandbox.mode != "bwrap":
            return None
        return None if self.session_dir is None else self.session_dir / "handoff"

    @property
    def kernel_work_dir(self) -> str:
        """The kernel's working folder as the kernel sees it (the same folder here; a
        kernel on another host or in a container reports its own)."""
        return str(self.work_path)

    async def async_start(self) -> KernelSession:
        """Start the kernel (fails with SandboxUnavailable naming the fix)."""
        if self.km is not None:
            return self
        self.sandbox.check()
        sweep_stale_sessions(Path(self.runtime_dir), self.sandbox)
        self.session_dir = make_session_dir(Path(self.runtime_dir))
        try:
            self.egress = self.sandbox.start_egress_proxy(self.session_dir)
            self.km = self._make_kernel_manager(self.session_dir)
            await self._launch()
        except BaseException:
            await self.async_shutdown()
            raise
        return self

    def _make_kernel_manager(self, session_dir: Path) -> AsyncKernelManager:
        socket_dir = session_dir / "ipc"
        if len(str(socket_dir / "kernel-N")) > MAX_SOCKET_PATH:
            raise KernelStartError(
                f"the ipc socket path {socket_dir}/kernel-N is too long for a unix socket "
                f"({MAX_SOCKET_PATH} bytes at most); configure a shorter runtime_dir"
            )
        socket_dir.mkdir(mode=0o700)
        self.work_path.mkdir(mode=0o755, exist_ok=True)
        if self.work_dir and self.sandbox.mode == "bwrap":
            # The user's folder: lent to the sandbox uid, given back as it was at shutdown.
            uid = self.sandbox.sandbox_uid if os.geteuid() == 0 else None
            self._lease = WorkFolderLease(self.work_path, session_dir, uid)
            self._lease.lend()
        km = AsyncKernelManager(
            parent=self,
            transport="ipc",
            ip=str(socket_dir / "kernel"),
            connection_file=str(session_dir / "kernel.json"),
        )
        km._kernel_spec = KernelSpec(
            argv=[self.kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (CodeAct sandbox)",
            language="python",
            interrupt_mode="message",
        )
        km.provisioner = SandboxProvisioner(
            kernel_id=uuid.uuid4().hex,
            kernel_spec=km._kernel_spec,
            parent=km,
            sandbox=self.sandbox,
            session_dir=str(session_dir),
            work_dir=str(self.work_path),
            socket_dir=str(socket_dir),
        )
        return km

    async def _launch(self) -> None:
        await self._launch_process()
        assert self.km is not None
        if self.kc is None:
            self.kc = self.km.client()
            self.kc.start_channels()
        await self._wait_for_ready("start")
        await self.async_run_startup_code()

    async def _launch_process(self) -> None:
        """Start the kernel process; a warm pool stops here and connects later."""
        assert self.km is not None and self.session_dir is not None
        # Held open for the session's life: restarts relaunch with the same
        # arguments, so a closed handle here would break every restart.
        self._log = open(self.session_dir / "kernel.log", "ab")
        await self.km.start_kernel(stdout=self._log, stderr=self._log)
        plan = self._provisioner().plan
        self.isolation = list(plan.isolation) if plan is not None else []
        if self._lease is not None:
            self.isolation.append(f"work folder {self.work_path}: {self._lease.how}")

    async def async_run_startup_code(self) -> None:
        for code in self.startup_code:
            result = await self.async_execute(code, silent=True, store_history=False)
            if not result.ok:
                raise KernelStartError(f"startup code failed: {result.reason}", self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        if self.session_dir is None:
            return ""
        try:
            text = (self.session_dir / "kernel.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def async_shutdown(self) -> None:
        """Stop the kernel and remove the session folder and cgroups."""
        km, self.km = self.km, None
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if km is not None:
            plan = km.provisioner.plan if isinstance(km.provisioner, SandboxProvisioner) else None
            try:
                if km.has_kernel:
                    await km.shutdown_kernel(now=True)
            finally:
                for path in plan.cgroups if plan else []:
                    release_cgroup(path)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lease is not None:
            self._lease.give_back()
            self._lease = None
        if self.egress is not None:
            self.egress.stop()
            self.egress = None
        if self.session_dir is not None:
            remove_tree(self.session_dir)
            self.session_dir = None

    async def async_restart(self) -> None:
        """Kill and start the kernel again: all state is lost."""
        km = self._require()
        await km.restart_kernel(now=True)
        self.restarts += 1
        await self._wait_for_ready("restart")
        await self.async_run_startup_code()

    async def _wait_for_ready(self, what: str) -> None:
        # The outer bound guards against a zmq recv that waits forever after
        # its poll said ready (it happens when another reader took the message).
        try:
            await asyncio.wait_for(
                self.kc.wait_for_ready(timeout=self.startup_timeout), self.startup_timeout + 5
            )
        except (RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
            raise KernelStartError(f"kernel did not {what}: {exc}", self.log_tail()) from exc

    async def async_interrupt(self) -> None:
        """Send an interrupt_request (message mode: SIGINT would kill bwrap)."""
        await self._require().interrupt_kernel()

    async def async_reset(self) -> None:
        """Clear every user variable with ``%reset -f``, then restore the startup code."""
        await self.async_execute("%reset -f", silent=True, store_history=False)
        await self.async_run_startup_code()

    async def async_is_alive(self) -> bool:
        return self.km is not None and bool(await self.km.is_alive())

    def _require(self) -> AsyncKernelManager:
        if self.km is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        return self.km

    def _ensure_running(self) -> None:
        """SessionClosed unless started (kernels reached otherwise than by ``km`` override)."""
        self._require()

    # ---- execution -------------------------------------------------------------------

    async def async_execute(
        self,
        code: str,
        timeout: float | None = None,
        *,
        silent: bool = False,
        store_history: bool = True,
        on_output: OutputCallback | None = None,
        stdin_handler: StdinHandler | None = None,
        user_expressions: dict[str, str] | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return its outputs; never waits past timeout + grace + a restart.

        ``on_output`` sees each output as it arrives (stream chunks one by one).
        ``stdin_handler(prompt, password)`` answers ``input()``; without one,
        ``input()`` fails at once with StdinNotImplementedError. Calls made while
        another is running wait for it; the timeout counts once their cell starts.
        """
        args = (code, timeout, silent, store_history, on_output, stdin_handler, user_expressions)
        if self._execute_owner is not None and self._execute_owner is asyncio.current_task():
            # Recovery inside a cell (a restart re-running the startup code) executes
            # on that cell's turn; waiting for the lock here would wait for ourselves.
            return await self._execute(*args)
        async with self._execute_lock:
            self._execute_owner = asyncio.current_task()
            try:
                return await self._execute(*args)
            finally:
                self._execute_owner = None

    async def _execute(
        self, code: str, timeout: float | None, silent: bool, store_history: bool,
        on_output: OutputCallback | None, stdin_handler: StdinHandler | None,
        user_expressions: dict[str, str] | None,
    ) -> ExecutionResult:
        self._ensure_running()
        limit = self.timeout if timeout is None else timeout
        if not math.isfinite(limit) or limit <= 0:
            # A NaN deadline never comes: the wait below would never end.
            raise ValueError(f"execute timeout must be a finite number of seconds > 0, "
                             f"not {limit!r}")
        started = time.monotonic()
        before = self._counters()
        msg_id = self.kc.execute(
            code,
            silent=silent,
            store_history=store_history,
            allow_stdin=stdin_handler is not None,
            user_expressions=user_expressions or {},
        )
        collector = OutputCollector(msg_id, on_output, self.max_cleared_outputs)
        clock = InputClock()
        tasks = [
            asyncio.ensure_future(self._pump_iopub(collector)),
            asyncio.ensure_future(self._await_reply(msg_id, collector)),
        ]
        if stdin_handler is not None or self._tools_over_stdin:
            tools = self.tool_handler if self._tools_over_stdin else None
            tasks.append(asyncio.ensure_future(pump_stdin(
                self.kc, msg_id,
                StdinAnswers(stdin_handler, tools, self.async_interrupt, self.approval_handler),
                clock,
            )))
        try:
            verdict = await self._supervise(tasks[:2], started + limit, clock)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Recovery starts only once nothing else reads the kernel's channels: a
        # reader left waiting on shell would swallow the restarted kernel's
        # kernel_info_reply and hang the restart.
        result = await self._conclude(verdict, collector, limit, before)
        result.duration = time.monotonic() - started
        if self.egress is not None and not silent:
            # Requests made while a silent cell ran are reported with the next visible one.
            result.egress = self.egress.drain()
        if clock.error is not None:
            raise clock.error
        return result

    async def _supervise(
        self, waiters: Sequence[asyncio.Future[None]], deadline: float, clock: InputClock
    ) -> str:
        """Wait for reply and idle; return "done", "interrupted", "stuck" or "died"."""
        interrupted_at: float | None = None
        while True:
            done, _ = await asyncio.wait(waiters, timeout=POLL_INTERVAL)
            for task in done:
                task.result()  # a broken channel is a bug to surface, not a timeout
            if len(done) == len(waiters):
                return "done" if interrupted_at is None else "interrupted"
            if not await self.async_is_alive():
                return "died"
            now = time.monotonic()
            if interrupted_at is None and now >= deadline + clock.paused(now):
                interrupted_at = now
                await self.async_interrupt()
            elif interrupted_at is not None and now >= interrupted_at + self.interrupt_grace:
                return "stuck"

    async def _conclude(
        self, verdict: str, collector: OutputCollector, limit: float, before: Counters
    ) -> ExecutionResult:
        if verdict == "died":
            cause = self._death_cause(before)
            await self.async_restart()
            result = collector.result(status="died")
            result.kernel_died, result.recovery, result.state_lost = True, "restarted", True
            result.reason = f"the kernel died ({cause}); it was restarted and {LOST}"
            return result
        if verdict == "stuck":
            await self.async_restart()
            result = collector.result(status="timeout")
            result.timed_out, result.recovery, result.state_lost = True, "restarted", True
            result.reason = (
                f"timed out after {limit:g}s and ignored the interrupt; the kernel was "
                f"restarted and {LOST}"
            )
            return result
        result = collector.result()
        if verdict == "interrupted":
            result.timed_out, result.recovery = True, "interrupted"
            result.reason = (
                f"timed out after {limit:g}s; the cell was interrupted and the kernel kept "
                "its variables"
            )
        after = self._counters()
        if before.pids_max is not None and (after.pids_max or 0) > before.pids_max:
            # A fork bomb leaves the kernel alive but unable to start threads,
            # so a cell that hit the process limit gets a fresh kernel.
            await self.async_restart()
            result.recovery, result.state_lost = "restarted", True
            result.reason = (
                f"the cell hit the process limit ({self.sandbox.pids_limit} processes and "
                f"threads); the kernel was restarted and {LOST}"
            )
        return result

    def _provisioner(self) -> SandboxProvisioner:
        provisioner = self._require().provisioner
        assert isinstance(provisioner, SandboxProvisioner)
        return provisioner

    def _cgroups(self) -> list[Path]:
        plan = self._provisioner().plan if self.km is not None else None
        return list(plan.cgroups) if plan is not None else []

    def _counters(self) -> Counters:
        return read_counters(self._cgroups())

    def _death_cause(self, before: Counters) -> str:
        process = self._provisioner().process
        return death_cause(before, self._counters(),
                           process.returncode if process is not None else None,
                           self.sandbox.memory_limit)

    async def _pump_iopub(self, collector: OutputCollector) -> None:
        while not collector.idle:
            try:
                msg = await self.kc.get_iopub_msg()
            except zmq.ZMQError:
                raise  # the channel itself broke: a host failure, not a bad message
            except Exception as exc:  # a signed frame that does not parse (deep JSON...)
                collector.reject(f"unreadable iopub message: {type(exc).__name__}: {exc}")
                continue
            collector.handle(msg)

    async def _await_reply(self, msg_id: str, collector: OutputCollector) -> None:
        while True:
            try:
                msg = await self.kc.get_shell_msg()
            except zmq.ZMQError:
                raise
            except Exception as exc:
                collector.reject(f"unreadable shell message: {type(exc).__name__}: {exc}")
                continue
            if collector.take_reply(msg):
                return

    @property
    def _tools_over_stdin(self) -> bool:
        return self.tool_transport == "stdin" and self.tool_handler is not None

    # ---- sync API and context managers ------------------------------------------------

    # Each sync method runs self.async_<name>, so a subclass's override is honoured.
    start = blocking("async_start")
    shutdown = blocking("async_shutdown")
    restart = blocking("async_restart")
    interrupt = blocking("async_interrupt")
    reset = blocking("async_reset")
    execute = blocking("async_execute")

    @property
    def is_alive(self) -> bool:
        return bool(run_sync(self.async_is_alive)())

    def __enter__(self) -> KernelSession:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> KernelSession:
        return await self.async_start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.async_shutdown()

