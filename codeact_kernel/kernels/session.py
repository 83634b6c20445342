"""One kernel for one agent session, driven over the Jupyter protocol.

KernelSession is the executor: it runs cells and supervises them. Where the kernel
comes from (a local sandbox by default, a connection file, a gateway, a warm pool)
is the kernel manager passed in (kernels/manager.py), as nbclient's NotebookClient
takes ``km=``.

Async first; the sync API is derived with ``run_sync`` (the nbclient pattern).
Every wait has a bound: a cell that overruns is interrupted, then the kernel
is restarted if it will not stop, and a kernel that dies silently is noticed
by polling ``is_alive`` while waiting.
"""

from __future__ import annotations

import ast
import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from traitlets import Bool, Enum, Float, Instance, Int, List, Unicode, default
from traitlets.config import Configurable, LoggingConfigurable

from ..errors import KernelStartError, SessionClosed
from ..kernel_side.templates import CWD_EXPRESSION, RESET
from ..sandbox.cgroups import Counters
from ..sandbox.dirs import default_runtime_dir
from .budget import MIB, OutputBudget
from .client import BoundedKernelClient
from .execution import ExecutionResult
from .inflight import InFlight, Verdict
from .local import SandboxKernelManager
from .manager import DroppingChannels, KernelChannels, SessionKernelManager
from .outputs import OutputCollector
from .stdin import (
    ApprovalHandler,
    InputClock,
    StdinAnswers,
    StdinHandler,
    ToolPromptHandler,
    pump_stdin,
)

OutputCallback = Callable[[NotebookNode], Any]
LOST = "ALL VARIABLES WERE LOST"
# Keywords that configure the session itself, not its manager.
_CONSTRUCTION = ("parent", "config", "log")
_BASE_TRAITS = set(LoggingConfigurable.class_trait_names())


def blocking(name: str) -> Callable[..., Any]:
    """The sync form of the coroutine method ``name``, resolved on the instance."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return run_sync(getattr(self, name))(*args, **kwargs)

    method.__name__ = name.removeprefix("async_")
    method.__doc__ = f"Blocking form of :meth:`{name}`."
    return method


class KernelSession(Configurable):
    """Executes code in the kernel of one session, whose manager starts and recovers it.

    ``KernelSession(manager=...)`` takes any :class:`SessionKernelManager`; without one
    it starts a local sandboxed kernel (:class:`SandboxKernelManager`), and keywords
    naming that manager's traits (``sandbox=``, ``kernel_python=``) configure it. Use it
    as a context manager (``with`` or ``async with``); shutdown ends the kernel and
    removes what its manager made.
    """

    manager = Instance(
        SessionKernelManager,  # type: ignore[type-abstract]  # an instance of a concrete one
        help="Where the kernel comes from and how it is started, interrupted, restarted "
        "and ended. Default: a local sandboxed kernel.",
    )
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
    max_output_bytes = Int(
        16 * MIB,
        help="Output one execute keeps, in characters of text and MIME data as received. "
        "Past it the rest of the execution's output is dropped, counted, and the result "
        "says so (ExecutionResult.output_dropped): the host never holds more.",
    ).tag(config=True)
    max_output_messages = Int(
        10_000,
        help="Output messages (streams, displays, updates, clears) one execute keeps; "
        "past it the rest is dropped and counted, as for max_output_bytes.",
    ).tag(config=True)
    interrupt_on_flood = Bool(
        True,
        help="Interrupt a cell that goes on producing output after a cap was hit, once "
        "it has produced as much again as the caps allow (a flood), instead of letting "
        "it run to its timeout.",
    ).tag(config=True)
    runtime_dir = Unicode(
        help="Host folder holding one sub-folder per session (connection file, ipc sockets)."
    ).tag(config=True)
    work_dir = Unicode(
        "",
        help="Writable work folder of the kernel (its HOME and cwd). Empty means a fresh "
        "folder inside the session folder, removed at shutdown.",
    ).tag(config=True)
    startup_code = List(
        Unicode(),
        help="Code run silently after every start, restart and reset (tool stubs, helpers).",
    ).tag(config=True)
    tool_transport = Enum(
        ["ipc", "stdin"],
        help="How the kernel's tool stubs reach the host tools: 'ipc' (a ZMQ socket in the "
        "session folder: fastest, any thread) or 'stdin' (marked input requests on the "
        "Jupyter stdin channel: crosses gateways and containers, main thread only). "
        "Default: what the kernel manager can reach ('stdin' for kernels not started here).",
    ).tag(config=True)

    @default("manager")
    def _default_manager(self) -> SessionKernelManager:
        return SandboxKernelManager(parent=self)

    @default("runtime_dir")
    def _default_runtime_dir(self) -> str:
        return default_runtime_dir()

    @default("tool_transport")
    def _default_tool_transport(self) -> str:
        return "stdin" if self.manager.tools_over_stdin else "ipc"

    def __init__(self, **kwargs: Any) -> None:
        settings = {k: kwargs.pop(k) for k in list(kwargs) if not self._is_own(k)}
        super().__init__(**kwargs)
        if settings:
            if "manager" in kwargs:
                raise TypeError(f"{', '.join(sorted(settings))}: configure the manager "
                                "itself when passing manager=")
            self.manager = manager_from(SandboxKernelManager, self, settings)
        self.restarts = 0
        self._kernel_cwd: str | None = None
        self.setup_processes: int | None = None
        # Answers tool prompts when tool_transport is "stdin" (set by the Agent).
        self.tool_handler: ToolPromptHandler | None = None
        # Decides on tool calls held for a human's approval (set by the Agent).
        self.approval_handler: ApprovalHandler | None = None
        # One cell at a time: concurrent callers would read each other's replies off the
        # shared channels, so they queue here, like cells queued in a notebook.
        self._execute_lock = asyncio.Lock()
        self._execute_owner: asyncio.Task[Any] | None = None

    @classmethod
    def _is_own(cls, name: str) -> bool:
        return name in _CONSTRUCTION or cls.class_traits().get(name) is not None

    @classmethod
    def on(cls, manager_class: type[SessionKernelManager], **kwargs: Any) -> KernelSession:
        """A session on a new ``manager_class``: keywords naming KernelSession traits
        configure the session, the others the manager."""
        settings = {k: kwargs.pop(k) for k in list(kwargs) if not cls._is_own(k)}
        session = cls(**kwargs)
        session.manager = manager_from(manager_class, session, settings)
        return session

    # ---- what the manager provides ---------------------------------------------------

    @property
    def kc(self) -> KernelChannels:
        """The kernel's channels (its manager's; a restart may replace them)."""
        return self.manager.channels

    @property
    def session_dir(self) -> Path | None:
        """The host folder of this session (tool socket, logs), while started."""
        return self.manager.session_dir

    @property
    def work_path(self) -> Path:
        """The work folder on the host (the kernel's too if the manager shares it)."""
        assert self.manager.work_path is not None, "the session is not started"
        return self.manager.work_path

    @property
    def kernel_work_dir(self) -> str:
        """The kernel's working folder as the kernel sees it."""
        return self.manager.kernel_work_dir or self._kernel_cwd or ""

    @property
    def isolation(self) -> list[str]:
        """How the kernel is isolated, in lines for the trace."""
        learned = ([f"kernel working folder (kernel side): {self._kernel_cwd}"]
                   if self._kernel_cwd else [])
        return [*self.manager.isolation, *learned]

    # ---- lifecycle -------------------------------------------------------------------

    async def async_start(self) -> KernelSession:
        """Start the kernel (fails with an error naming the fix), then the startup code."""
        if self.manager.has_kernel:
            return self
        self._kernel_cwd = None
        try:
            await self.manager.start_kernel(runtime_dir=Path(self.runtime_dir),
                                            work_dir=self.work_dir,
                                            timeout=self.startup_timeout)
            if self.manager.kernel_work_dir is None:
                await self._learn_cwd()
            await self.async_run_startup_code()
        except BaseException:
            await self.async_shutdown()
            raise
        return self

    async def _learn_cwd(self) -> None:
        result = await self.async_execute("", silent=True, store_history=False,
                                          user_expressions={"cwd": CWD_EXPRESSION}, timeout=10)
        try:
            text = result.user_expressions["cwd"]["data"]["text/plain"]
            self._kernel_cwd = str(ast.literal_eval(text))
        except (KeyError, TypeError, ValueError, SyntaxError) as exc:
            raise KernelStartError(
                "the kernel did not report its working folder; is it an IPython kernel? "
                f"({result.reason or exc})"
            ) from None

    async def async_run_startup_code(self) -> None:
        for code in self.startup_code:
            result = await self.async_execute(code, silent=True, store_history=False)
            if not result.ok:
                raise KernelStartError(f"startup code failed: {result.reason}", self.log_tail())
        self.setup_processes = self.process_count()

    def process_count(self) -> int | None:
        """The kernel's processes as the host counts them (None where it cannot);
        ``setup_processes`` is the count once the startup code ran."""
        return self.manager.process_count() if self.manager.has_kernel else None

    def log_tail(self, lines: int = 30) -> str:
        return self.manager.log_tail(lines)

    async def async_shutdown(self) -> None:
        """Stop the kernel and remove what its manager made (session folder, cgroups)."""
        await self.manager.shutdown_kernel()

    async def async_restart(self) -> None:
        """A fresh kernel from the manager: all state is lost; the startup code runs again."""
        self._ensure_running()
        await self.manager.restart_kernel(timeout=self.startup_timeout)
        self.restarts += 1
        self._lost_channels()  # the restart's own disconnects: those sockets reconnected
        await self.async_run_startup_code()

    async def async_interrupt(self) -> None:
        """Ask the kernel to interrupt the running cell."""
        self._ensure_running()
        await self.manager.interrupt_kernel()

    async def async_reset(self) -> None:
        """Clear every user variable with ``%reset -f``, then restore the startup code."""
        await self.async_execute(RESET, silent=True, store_history=False)
        await self.async_run_startup_code()

    async def async_is_alive(self) -> bool:
        return self.manager.has_kernel and await self.manager.is_alive()

    def _ensure_running(self) -> None:
        if not self.manager.has_kernel:
            raise SessionClosed("the kernel session is not running; call start() first")

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
        before = self.manager.counters()
        await self._reopen(self._lost_channels())  # dropped between executes
        msg_id = self.kc.execute(
            code,
            silent=silent,
            store_history=store_history,
            allow_stdin=stdin_handler is not None,
            user_expressions=user_expressions or {},
        )
        collector = OutputCollector(
            msg_id, on_output, self.max_cleared_outputs,
            budget=OutputBudget(self.max_output_bytes, self.max_output_messages),
        )
        clock = InputClock()
        flight = InFlight(lambda: self.kc, collector, alive=self.async_is_alive,
                          interrupt=self.async_interrupt, grace=self.interrupt_grace,
                          stop_floods=self.interrupt_on_flood)
        tasks: list[asyncio.Future[None]] = []
        if stdin_handler is not None or self._tools_over_stdin:
            tools = self.tool_handler if self._tools_over_stdin else None
            tasks.append(asyncio.ensure_future(pump_stdin(
                self.kc, msg_id,
                StdinAnswers(stdin_handler, tools, self.async_interrupt, self.approval_handler),
                clock,
            )))
        try:
            verdict = await flight.run(started + limit, clock)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Recovery starts only once nothing else reads the kernel's channels: a
        # reader left waiting on shell would swallow the restarted kernel's
        # kernel_info_reply and hang the restart.
        result = await self._conclude(verdict, collector, limit, before)
        result.duration = time.monotonic() - started
        egress = self.manager.egress
        if egress is not None and not silent:
            # Requests made while a silent cell ran are reported with the next visible one.
            result.egress = egress.drain()
        if clock.error is not None:
            raise clock.error
        return result

    async def _conclude(
        self, verdict: Verdict, collector: OutputCollector, limit: float, before: Counters
    ) -> ExecutionResult:
        # Channels are re-made first: a restart waits for kernel_info on shell (and
        # proves them live, so no greeting is awaited from a kernel about to restart).
        restart = verdict.kind in ("died", "stuck") or {"iopub", "shell"} <= verdict.lost
        await self._reopen(verdict.lost - verdict.reopened, welcome=not restart)
        if verdict.kind == "died":
            cause = self.manager.death_cause(before)
            await self.async_restart()
            result = collector.result(status="died")
            result.kernel_died, result.recovery, result.state_lost = True, "restarted", True
            result.set_reason(f"the kernel died ({cause}); it was restarted and {LOST}")
        elif restart:
            await self.async_restart()
            result = collector.result(status="timeout" if verdict.kind == "stuck" else "lost")
            result.timed_out = verdict.kind == "stuck"
            result.recovery, result.state_lost = "restarted", True
            result.set_reason(f"{verdict.why_stopped(limit)} and ignored the interrupt"
                              if verdict.kind == "stuck" else "its end could not be seen")
            result.reason += f"; the kernel was restarted and {LOST}"
        else:
            result = collector.result(status=None if collector.reply else "lost")
            if verdict.kind == "interrupted":
                result.timed_out, result.recovery = not verdict.flood, "interrupted"
                result.set_reason(f"{verdict.why_stopped(limit)}; the cell was "
                                  "interrupted and the kernel kept its variables")
            await self._check_exhausted(result, before)
        if verdict.kind != "died":  # a dying kernel drops every connection: no news
            result.lost_channels = sorted(verdict.lost)
            result.add_note(verdict.lost_note(self._loss_cause()))
        return result

    async def _check_exhausted(self, result: ExecutionResult, before: Counters) -> None:
        exhausted = self.manager.exhausted_limit(before)
        if exhausted is not None:
            # A fork bomb leaves the kernel alive but unable to start threads,
            # so a cell that hit the process limit gets a fresh kernel.
            await self.async_restart()
            result.recovery, result.state_lost = "restarted", True
            result.set_reason(f"the cell hit {exhausted}; the kernel was restarted and {LOST}")

    def _lost_channels(self) -> set[str]:
        """Channels whose connection libzmq dropped (a message over the size limit). A
        gateway backlog's drops are forgotten: between cells they were stale output."""
        kc = self.kc
        if isinstance(kc, DroppingChannels):
            kc.take_dropped()
        return kc.lost_channels() if isinstance(kc, BoundedKernelClient) else set()

    def _loss_cause(self) -> str:
        kc = self.kc
        if isinstance(kc, (BoundedKernelClient, DroppingChannels)):
            return kc.loss_cause()
        return "the channel was closed"

    async def _reopen(self, lost: set[str], welcome: bool = True) -> None:
        kc = self.kc
        if lost and isinstance(kc, BoundedKernelClient):
            await kc.reopen(lost, welcome)

    @property
    def _tools_over_stdin(self) -> bool:
        return self.tool_transport == "stdin" and self.tool_handler is not None

    # ---- sync API and context managers ------------------------------------------------

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


def manager_from(manager_class: type[SessionKernelManager], session: KernelSession,
                 settings: dict[str, Any]) -> SessionKernelManager:
    """``manager_class(**settings)`` owned by ``session``; TypeError naming both classes'
    settings for a keyword neither has."""
    unknown = sorted(k for k in settings if not manager_class.class_traits().get(k))
    if unknown:
        raise TypeError(
            f"unknown keyword {', '.join(unknown)}: KernelSession takes "
            f"{', '.join(sorted(KernelSession.class_trait_names(config=True)))}, and "
            f"{manager_class.__name__} takes "
            f"{', '.join(sorted(set(manager_class.class_trait_names()) - _BASE_TRAITS))}"
        )
    return manager_class(parent=session, **settings)


class SessionFactory:
    """A name for sessions on one kind of kernel manager, kept from before managers were
    passed in: ``GatewaySession(url=..., timeout=...)`` is
    ``KernelSession.on(GatewayKernelManager, url=..., timeout=...)``."""

    manager_class: ClassVar[type[SessionKernelManager]]

    def __new__(cls, **kwargs: Any) -> KernelSession:  # type: ignore[misc]
        return KernelSession.on(cls.manager_class, **kwargs)
