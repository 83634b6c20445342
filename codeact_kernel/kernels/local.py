"""The local sandbox: an ipykernel in bubblewrap, launched by jupyter_client.

:class:`SandboxKernelManager` holds a jupyter_client ``AsyncKernelManager`` whose
provisioner is :class:`~codeact_kernel.kernels.provisioner.SandboxProvisioner`, over
``ipc`` sockets in a fresh session folder that the sandbox binds at the same path.
Launching the process and opening the channels are separate steps, so that a warm
pool can launch on its own event loop and a session open the channels on its own.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Instance, Unicode, default

from ..errors import KernelStartError, SessionClosed
from ..sandbox.cgroups import (
    Counters,
    death_cause,
    process_count,
    read_counters,
    release_cgroup,
)
from ..sandbox.config import LaunchPlan, SandboxConfig
from ..sandbox.dirs import sweep_stale_sessions
from ..sandbox.interrupt import confirmed_interrupt
from ..sandbox.workdir import WorkFolderLease
from .client import BoundedKernelClient
from .manager import KernelChannels, SessionKernelManager, wait_until_ready
from .provisioner import SandboxProvisioner

# sun_path is 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107
# ipykernel greets each new iopub subscriber within milliseconds; a kernel that
# does not (older ipykernel) falls back to jupyter_client's readiness check.
WELCOME_WAIT = 1.0


class SpecKernelManager(AsyncKernelManager):
    """An AsyncKernelManager for a kernel spec given at construction (none is installed),
    whose started kernel can move to another event loop."""

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    @property
    def kernel_spec(self) -> KernelSpec:
        return self.spec

    def release_loop_sockets(self) -> None:
        """Close the control socket start_kernel made on the current event loop; the
        next interrupt or shutdown opens one on its own loop. (jupyter_client has no
        public call for this, hence the subclass.)"""
        self._close_control_socket()


class SandboxKernelManager(SessionKernelManager):
    """A local ipykernel in the bubblewrap sandbox, owned by one session.

    ``shutdown_kernel`` kills it and removes the session folder and the cgroups it made.
    """

    shares_work_folder = True
    tools_over_stdin = False
    poolable = True

    sandbox = Instance(SandboxConfig, help="Isolation and limits of the kernel.")
    kernel_python = Unicode(
        help="Python interpreter that runs ipykernel inside the sandbox."
    ).tag(config=True)

    @default("sandbox")
    def _default_sandbox(self) -> SandboxConfig:
        return SandboxConfig(parent=self)

    @default("kernel_python")
    def _default_kernel_python(self) -> str:
        legacy = self.config.get("KernelSession", {}).get("kernel_python")
        if isinstance(legacy, str):
            warnings.warn("KernelSession.kernel_python is now SandboxKernelManager.kernel_python "
                          "(the setting of the local sandbox)", DeprecationWarning, stacklevel=2)
            return legacy
        return sys.executable

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.km: SpecKernelManager | None = None
        self._kc: Any = None
        self._log: BinaryIO | None = None
        self._lease: WorkFolderLease | None = None

    # ---- what the sandbox exposes -----------------------------------------------------

    @property
    def plan(self) -> LaunchPlan | None:
        """The sandbox's launch plan of the running kernel (argv, cgroups, isolation)."""
        provisioner = self.km.provisioner if self.km is not None else None
        return provisioner.plan if isinstance(provisioner, SandboxProvisioner) else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The launched process (bwrap, or the kernel itself without a sandbox)."""
        provisioner = self.km.provisioner if self.km is not None else None
        process: subprocess.Popen[bytes] | None = getattr(provisioner, "process", None)
        return process

    @property
    def kernel_work_dir(self) -> str | None:
        # Bound at the same path inside the sandbox.
        return str(self.work_path) if self.work_path is not None else None

    @property
    def handoff_dir(self) -> Path | None:
        # Bound read-only in the sandbox; an unsandboxed kernel could write anywhere.
        if self.sandbox.mode != "bwrap" or self.session_dir is None:
            return None
        return self.session_dir / "handoff"

    # ---- starting ----------------------------------------------------------------------

    @property
    def has_kernel(self) -> bool:
        return self.km is not None

    @property
    def channels(self) -> KernelChannels:
        if self._kc is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        channels: KernelChannels = self._kc
        return channels

    async def start_kernel(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        await self.launch(runtime_dir=runtime_dir, work_dir=work_dir)
        self.open_channels()
        await wait_until_ready(self.channels, timeout, "start", self.log_tail)

    async def launch(self, *, runtime_dir: Path, work_dir: str) -> None:
        """Start the kernel process only (SandboxUnavailable naming the fix); a warm
        pool stops here and a session opens the channels later on its own loop."""
        if self.km is not None:
            return
        self.sandbox.check()
        sweep_stale_sessions(runtime_dir, self.sandbox)
        session_dir = self.open_folders(runtime_dir, work_dir)
        self.egress = self.sandbox.start_egress_proxy(session_dir)
        self.km = self._kernel_manager(session_dir, bool(work_dir))
        # Held open for the session's life: restarts relaunch with the same
        # arguments, so a closed handle here would break every restart.
        self._log = open(session_dir / "kernel.log", "ab")
        await self.km.start_kernel(stdout=self._log, stderr=self._log)
        plan = self.plan
        self.isolation = list(plan.isolation) if plan is not None else []
        if self._lease is not None:
            self.isolation.append(f"work folder {self.work_path}: {self._lease.how}")

    async def prestart(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        """Launch ahead of demand (a warm pool's loop): the process, proven to answer on
        shell, with nothing left bound to this event loop; ``attach`` on the taker's."""
        await self.launch(runtime_dir=runtime_dir, work_dir=work_dir)
        await self._answer_on_shell(timeout)
        assert self.km is not None
        self.km.release_loop_sockets()

    async def attach(self, timeout: float) -> None:
        """Open channels on this loop to a kernel ``prestart`` launched, once its iopub
        is live (so that no output of the first cell is lost)."""
        # No heartbeat thread: death is seen by polling the process we own. Its start
        # races a quick stop_channels in jupyter_client (it then spins opening sockets
        # until EMFILE).
        self.open_channels(heartbeat=False)
        deadline = time.monotonic() + WELCOME_WAIT
        while time.monotonic() < deadline:
            try:
                # The greeting (iopub_welcome) proves the subscription reached the kernel.
                await self._kc.get_iopub_msg(timeout=0.05)
                return
            except queue.Empty:
                if not await self.is_alive():
                    raise KernelStartError(
                        "the pooled kernel died before it was taken", self.log_tail()
                    ) from None
        await wait_until_ready(self.channels, timeout, "start", self.log_tail)

    async def _answer_on_shell(self, timeout: float) -> None:
        """Wait for a kernel_info_reply on a shell-only client.

        No iopub subscription is made here: ipykernel's XPUB greets a subscriber
        only when it is the first, and the taker's greeting is how it knows its
        own subscription is live.
        """
        assert self.km is not None
        kc = self.km.client()
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                kc.kernel_info()
                resend = time.monotonic() + 2.0
                while time.monotonic() < min(resend, deadline):
                    try:
                        msg = await kc.get_shell_msg(timeout=0.25)
                    except queue.Empty:
                        if not await self.is_alive():
                            raise KernelStartError(
                                "the kernel exited while starting", self.log_tail()
                            ) from None
                        continue
                    if msg["msg_type"] == "kernel_info_reply":
                        return
            raise KernelStartError(f"kernel did not answer within {timeout:g}s",
                                   self.log_tail())
        finally:
            kc.stop_channels()

    def process_running(self) -> bool:
        """Whether the launched process still runs (a cheap check, no event loop)."""
        process = self.process
        return process is not None and process.poll() is None

    def open_channels(self, heartbeat: bool = True) -> None:
        """A client on the current event loop: jupyter_client's async sockets belong to
        the loop that made them."""
        if self.km is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        if self._kc is None:
            self._kc = self.km.client()
            self._kc.start_channels(hb=heartbeat)

    def _kernel_manager(self, session_dir: Path, configured_work: bool) -> SpecKernelManager:
        socket_dir = session_dir / "ipc"
        if len(str(socket_dir / "kernel-N")) > MAX_SOCKET_PATH:
            raise KernelStartError(
                f"the ipc socket path {socket_dir}/kernel-N is too long for a unix socket "
                f"({MAX_SOCKET_PATH} bytes at most); configure a shorter runtime_dir"
            )
        socket_dir.mkdir(mode=0o700)
        assert self.work_path is not None
        if configured_work and self.sandbox.mode == "bwrap":
            # The user's folder: lent to the sandbox uid, given back as it was at shutdown.
            uid = self.sandbox.sandbox_uid if os.geteuid() == 0 else None
            self._lease = WorkFolderLease(self.work_path, session_dir, uid)
            self._lease.lend()
        spec = KernelSpec(
            argv=[self.kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (CodeAct sandbox)",
            language="python",
            interrupt_mode="message",
        )
        km = SpecKernelManager(
            spec, parent=self, transport="ipc", ip=str(socket_dir / "kernel"),
            connection_file=str(session_dir / "kernel.json"),
            # Every client of this kernel refuses oversized messages and queues few.
            client_factory=BoundedKernelClient,
        )
        km.provisioner = SandboxProvisioner(
            kernel_id=uuid.uuid4().hex, kernel_spec=spec, parent=km, sandbox=self.sandbox,
            session_dir=str(session_dir), work_dir=str(self.work_path),
            socket_dir=str(socket_dir),
        )
        return km

    # ---- running -----------------------------------------------------------------------

    async def is_alive(self) -> bool:
        return self.km is not None and bool(await self.km.is_alive())

    async def interrupt_kernel(self) -> None:
        """An interrupt_request (message mode: SIGINT would kill bwrap), confirmed by
        the kernel's reply (see ``sandbox.interrupt``); a kernel that does not confirm
        is left to the session's grace and restart."""
        if not await confirmed_interrupt(self._require()):
            self.log.warning("the kernel did not confirm the interrupt")

    async def restart_kernel(self, *, timeout: float) -> None:
        """Kill and relaunch the kernel with the same arguments; the channels stay."""
        await self._require().restart_kernel(now=True)
        await wait_until_ready(self.channels, timeout, "restart", self.log_tail)

    async def shutdown_kernel(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        km, self.km = self.km, None
        if km is not None:
            provisioner = km.provisioner
            plan = provisioner.plan if isinstance(provisioner, SandboxProvisioner) else None
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
        self.remove_folders()

    def _require(self) -> SpecKernelManager:
        if self.km is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        return self.km

    # ---- limits and death ----------------------------------------------------------------

    def counters(self) -> Counters:
        plan = self.plan
        return read_counters(list(plan.cgroups) if plan is not None else [])

    def process_count(self) -> int | None:
        plan = self.plan
        return process_count(list(plan.cgroups)) if plan is not None else None

    def death_cause(self, before: Counters) -> str:
        process = self.process
        return death_cause(before, self.counters(),
                           process.returncode if process is not None else None,
                           self.sandbox.memory_limit)

    def exhausted_limit(self, before: Counters) -> str | None:
        after = self.counters()
        if before.pids_max is not None and (after.pids_max or 0) > before.pids_max:
            return f"the process limit ({self.sandbox.pids_limit} processes and threads)"
        return None

    def log_tail(self, lines: int = 30) -> str:
        if self.session_dir is None:
            return ""
        try:
            text = (self.session_dir / "kernel.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def clone(self, parent: Any = None) -> SandboxKernelManager:
        twin = super().clone(parent)
        config = {n: getattr(self.sandbox, n) for n in self.sandbox.trait_names(config=True)}
        twin.sandbox = SandboxConfig(parent=twin, **config)
        return twin
