"""Where a session's kernel comes from: the kernel-manager interface.

:class:`~codeact_kernel.kernels.session.KernelSession` only executes code; the kernel
it executes in is started (or attached), interrupted, restarted, watched and shut down
by a manager passed in, as nbclient's ``NotebookClient(nb, km=...)`` takes a kernel
manager. The interface is shaped like jupyter_client's ``AsyncKernelManager``, with
the few things an agent session needs besides: the channels of the running kernel
(the session's client), the host folder of the session, why a kernel died, and
what the kernel can share with the host.

The backends, one class each:

* :class:`~codeact_kernel.kernels.local.SandboxKernelManager`: a local ipykernel in
  the bubblewrap sandbox (jupyter_client's AsyncKernelManager with the sandbox
  provisioner);
* :class:`~codeact_kernel.kernels.connection.ConnectionFileKernelManager`: a running
  kernel attached by its connection file;
* :class:`~codeact_kernel.kernels.gateway.GatewayKernelManager`: a kernel on a Jupyter
  Server, Kernel Gateway or Enterprise Gateway;
* :class:`~codeact_kernel.kernels.pool.PooledKernelManager`: a local sandbox that a
  :class:`~codeact_kernel.kernels.pool.KernelPool` started ahead of demand.
"""

from __future__ import annotations

import asyncio
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from traitlets.config import LoggingConfigurable
from traitlets.traitlets import MetaHasTraits

from ..errors import KernelStartError
from ..sandbox.cgroups import Counters
from ..sandbox.dirs import make_session_dir, remove_tree

if TYPE_CHECKING:
    from ..sandbox.egress import EgressProxy

M = TypeVar("M", bound="SessionKernelManager")


class KernelChannels(Protocol):
    """The part of jupyter_client's ``AsyncKernelClient`` a session executes over
    (``GatewayChannels`` has the same shape over a websocket)."""

    def execute(self, code: str, silent: bool = ..., store_history: bool = ...,
                user_expressions: dict[str, str] | None = ..., allow_stdin: bool = ...,
                stop_on_error: bool = ...) -> str: ...

    def input(self, string: str) -> None: ...

    async def get_shell_msg(self) -> dict[str, Any]: ...

    async def get_iopub_msg(self) -> dict[str, Any]: ...

    async def get_stdin_msg(self) -> dict[str, Any]: ...

    async def wait_for_ready(self, timeout: float) -> None: ...

    def stop_channels(self) -> None: ...


@runtime_checkable
class DroppingChannels(Protocol):
    """Channels that drop their oldest unread messages past a bound instead of holding
    them all (``GatewayChannels``: a websocket is read whether or not the host consumes).
    ZMQ channels bound themselves in libzmq and report a dropped connection instead
    (``BoundedKernelClient.lost_channels``)."""

    def take_dropped(self) -> dict[str, tuple[int, int]]: ...

    def loss_cause(self) -> str: ...


class _Meta(ABCMeta, MetaHasTraits):
    """traitlets' metaclass with abc's, so that a backend missing a method fails to
    instantiate (the pattern of jupyter_client's KernelProvisionerBase)."""


class SessionKernelManager(LoggingConfigurable, metaclass=_Meta):
    """The kernel of one session: start or attach it, watch it, recover it, end it.

    A backend is one subclass. Its traits (``.tag(config=True)``) are its configuration,
    read from the config section named after the class. It implements the abstract
    methods and, where they differ from the defaults, sets the capabilities and
    overrides ``counters``/``death_cause``/``exhausted_limit``/``log_tail``/
    ``kernel_work_dir``. A Docker backend, for example::

        class DockerKernelManager(SessionKernelManager):
            image = Unicode("codeact-kernel").tag(config=True)

            async def start_kernel(self, *, runtime_dir, work_dir, timeout):
                self.open_folders(runtime_dir, work_dir)  # session_dir for the conn file
                ...  # docker run -v {session_dir}:/conn image; wait for the file
                self._kc = BoundedKernelClient(); self._kc.load_connection_file(...)
                self._kc.start_channels()
                await wait_until_ready(self._kc, timeout)

            channels = property(lambda self: self._kc)
            has_kernel = property(lambda self: self._kc is not None)
            async def is_alive(self): ...        # docker inspect: State.Running
            async def interrupt_kernel(self): ...  # an interrupt_request on control
            async def restart_kernel(self, *, timeout): ...  # docker restart, wait ready
            async def shutdown_kernel(self): ...  # docker rm -f; self.remove_folders()

    and ``KernelSession(manager=DockerKernelManager(image=...))`` runs agents in it.
    Channels over ZMQ should be a :class:`~codeact_kernel.kernels.client.BoundedKernelClient`
    (``client_factory=`` for a jupyter_client manager): its sockets refuse oversized
    messages and queue few, and the session re-opens a channel libzmq dropped. Any other
    channels still get the session's per-execute output budget.
    Nothing else changes: tests/kernels/test_manager.py builds such a class (a plain
    local ipykernel) and runs a session on it.

    Every wait is bounded: ``start_kernel`` and ``restart_kernel`` by their ``timeout``;
    ``is_alive`` is polled while a cell runs, so it must answer quickly.
    """

    #: Whether the kernel sees ``work_path`` at ``kernel_work_dir`` (so the host can hand
    #: it files there); a kernel on another host or in a container does not.
    shares_work_folder: ClassVar[bool] = False
    #: Whether host tools reach the kernel over the Jupyter stdin channel by default:
    #: a kernel that cannot reach a unix socket in ``session_dir`` needs it.
    tools_over_stdin: ClassVar[bool] = True
    #: Whether a kernel that a warm pool started ahead of demand can stand in for this
    #: manager's (a local sandbox described by configuration alone).
    poolable: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Host folder of this session's files (tool socket, log), while started.
        self.session_dir: Path | None = None
        #: The work folder on the host (shared with the kernel if shares_work_folder).
        self.work_path: Path | None = None
        #: How the kernel is isolated, in lines for the trace and the user.
        self.isolation: list[str] = []
        #: The host end of the kernel's network egress, while started (None: no egress
        #: allow-list, the kernel has no network); the session reports its requests.
        self.egress: EgressProxy | None = None

    # ---- the interface ---------------------------------------------------------------

    @property
    @abstractmethod
    def has_kernel(self) -> bool:
        """Whether a kernel is started (or attached) and not shut down."""

    @property
    @abstractmethod
    def channels(self) -> KernelChannels:
        """The started channels of the kernel; a restart may replace them."""

    @abstractmethod
    async def start_kernel(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        """Start or attach the kernel; return once it answers kernel_info on open channels.

        ``runtime_dir`` holds the session folders; ``work_dir`` is the configured work
        folder ("" for a fresh one in the session folder). KernelStartError (or a
        backend's own CodeActError) naming the fix if the kernel cannot be had within
        ``timeout`` seconds; the caller then calls ``shutdown_kernel``.
        """

    @abstractmethod
    async def is_alive(self) -> bool:
        """Whether the kernel still runs (polled every 0.1 s while a cell runs)."""

    @abstractmethod
    async def interrupt_kernel(self) -> None:
        """Ask the kernel to interrupt the running cell."""

    @abstractmethod
    async def restart_kernel(self, *, timeout: float) -> None:
        """A fresh kernel (all state lost), answering on ``channels`` within ``timeout``.

        A backend that cannot relaunch the kernel raises KernelLost saying what to do.
        """

    @abstractmethod
    async def shutdown_kernel(self) -> None:
        """Stop (or detach from) the kernel and remove what the manager made. Idempotent."""

    # ---- defaults a backend may override ----------------------------------------------

    @property
    def kernel_work_dir(self) -> str | None:
        """The kernel's working folder as the kernel sees it; None: the session asks it."""
        return None

    @property
    def handoff_dir(self) -> Path | None:
        """Where the host hands the kernel files: a host folder the kernel reads but cannot
        write (so it can plant nothing there). None: values travel inline, as they must for
        a kernel on another filesystem, or one that could write anywhere the host can."""
        return None

    def counters(self) -> Counters:
        """Resource-limit event counts, read before a cell (cgroup counters locally)."""
        return Counters(oom_kills=0, pids_max=None)

    def process_count(self) -> int | None:
        """The kernel's processes as the host counts them (a local cgroup's members),
        which the kernel cannot misreport; None where the host cannot count them."""
        return None

    def death_cause(self, before: Counters) -> str:
        """Why the kernel died during the cell that started at ``before``, in words."""
        return "it stopped answering"

    def exhausted_limit(self, before: Counters) -> str | None:
        """A limit the cell since ``before`` exhausted that leaves the kernel alive but
        unusable (a fork bomb at the process limit), in words; None if there is none."""
        return None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the kernel's own log, for error messages ("" if there is none)."""
        return ""

    def clone(self: M, parent: Any = None) -> M:
        """An unstarted manager of the same kind and settings (a sub-agent's kernel)."""
        values = {name: getattr(self, name) for name in self.trait_names(config=True)}
        return type(self)(parent=parent if parent is not None else self.parent, **values)

    # ---- helpers for backends -----------------------------------------------------------

    def open_folders(self, runtime_dir: Path, work_dir: str) -> Path:
        """Make the session folder under ``runtime_dir`` and the host work folder."""
        self.session_dir = make_session_dir(runtime_dir)
        self.work_path = Path(work_dir).resolve() if work_dir else self.session_dir / "work"
        self.work_path.mkdir(mode=0o755, parents=True, exist_ok=True)
        return self.session_dir

    def remove_folders(self) -> None:
        """Remove the session folder (a configured work folder is the user's: it stays)."""
        if self.session_dir is not None:
            remove_tree(self.session_dir)  # the kernel may have planted links in it
        self.session_dir = self.work_path = None


async def wait_until_ready(kc: KernelChannels, timeout: float, what: str = "start",
                           log_tail: Callable[[], str] | None = None) -> None:
    """Until the kernel answers kernel_info on ``kc``; KernelStartError after ``timeout``
    (with the end of the kernel's log, read then, if ``log_tail`` is given)."""
    # The outer bound guards against a zmq recv that waits forever after its poll said
    # ready (it happens when another reader took the message).
    try:
        await asyncio.wait_for(kc.wait_for_ready(timeout=timeout), timeout + 5)
    except (RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
        raise KernelStartError(f"kernel did not {what} within {timeout:g}s: {exc}",
                               log_tail() if log_tail else "") from exc
