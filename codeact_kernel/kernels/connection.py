"""A running kernel the agent did not start, attached by its connection file.

:class:`ConnectionFileKernelManager` talks ZMQ to a running kernel (a container, a
kernel started by someone else). It interrupts with ``interrupt_request`` on the
control channel and notices death by the heartbeat and by the kernel's session id
(a relaunched kernel answers with another). It cannot relaunch a process it does not
own: after a death it waits ``restart_wait`` seconds for whatever supervises the
kernel to bring it back on the same connection file; a cell that ignores the
interrupt raises KernelLost (ipykernel honours ``shutdown_request`` only once the
cell returns). The kernel is left running at the end unless ``shutdown_on_close``.

Host tools reach it through the Jupyter stdin channel by default (kernels/stdin.py):
it needs no shared folder. The host's session folder holds the session's own files
only; the kernel's working folder is what the kernel reports, never written to from
the host, since a path a remote kernel names must not steer host writes.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from traitlets import Bool, Float, Unicode

from ..errors import KernelLost, KernelStartError, SessionClosed
from ..sandbox.cgroups import Counters
from ..sandbox.interrupt import confirmed_interrupt
from .client import BoundedKernelClient
from .manager import KernelChannels, SessionKernelManager
from .session import SessionFactory


class ConnectionFileKernelManager(SessionKernelManager):
    """A running kernel, attached by its connection file; it is left running at the end.

    Configured under ``ConnectionFileKernelManager`` or, as before managers were passed
    in, ``ConnectionFileSession`` (``c.ConnectionFileSession.connection_file = ...``).
    """

    connection_file = Unicode(
        "", help="Connection file of a running kernel to use instead of starting one (e.g. a "
        "kernel in a container, with the file and ipc sockets on a shared folder)."
    ).tag(config=True)
    restart_wait = Float(
        15.0, help="Seconds to wait, after the attached kernel died, for whatever supervises "
        "it (a container restart policy, a Jupyter server) to bring it back on the same "
        "connection file; codeact cannot relaunch a kernel it did not start. 0: do not wait."
    ).tag(config=True)
    heartbeat_grace = Float(
        5.0, help="Seconds of missed heartbeats before the attached kernel counts as dead."
    ).tag(config=True)
    liveness_interval = Float(
        2.0, help="Seconds between kernel_info probes on the control channel while a cell "
        "runs: a kernel its supervisor relaunched answers with another session id (its "
        "heartbeat alone would not tell)."
    ).tag(config=True)
    shutdown_on_close = Bool(
        False, help="Ask the attached kernel to shut down when the session closes (by default "
        "it is left running: the agent did not start it)."
    ).tag(config=True)

    @classmethod
    def section_names(cls) -> list[str]:
        # Config written before managers were passed in names the session class.
        return ["ConnectionFileSession", *super().section_names()]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kc: AsyncKernelClient | None = None
        self._silent_since: float | None = None
        self._identity: str | None = None  # the kernel process's session id
        self._probe: tuple[str, float] | None = None  # (msg_id, sent at)
        self._replaced = False

    @property
    def has_kernel(self) -> bool:
        return self._kc is not None

    @property
    def channels(self) -> KernelChannels:
        channels: KernelChannels = self._require()
        return channels

    def _require(self) -> AsyncKernelClient:
        if self._kc is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        return self._kc

    @property
    def _path(self) -> Path:
        return Path(self.connection_file).expanduser().resolve()

    async def start_kernel(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        if self._kc is None:
            self.open_folders(runtime_dir, work_dir)
            await self._connect(timeout)

    async def _connect(self, timeout: float) -> None:
        if not self.connection_file:
            raise KernelStartError("no connection file configured "
                                   "(ConnectionFileSession.connection_file)")
        deadline = time.monotonic() + timeout
        info = _reroot_ipc(await _read_connection_file(self._path, timeout), self._path)
        kc = BoundedKernelClient(parent=self)
        kc.load_connection_info(info)  # type: ignore[arg-type]  # checked keys above
        kc.start_channels()
        self._kc, self._silent_since, self._probe, self._replaced = kc, None, None, False
        where = (f"ipc sockets {info.get('ip')}-*" if info.get("transport") == "ipc"
                 else f"tcp {info.get('ip')}")
        if not await _answers(kc, max(1.0, deadline - time.monotonic())):
            raise KernelStartError(
                f"the kernel of {self._path} did not answer within {timeout:g}s: is it "
                f"running, and can this process reach its {where}?"
            )
        self._identity = await self._identify(5.0)
        self.isolation = [f"attached kernel: connection file {self._path} ({where}); its "
                          "isolation is whatever runs it (a container, another host)"]

    def _ask_identity(self) -> None:
        kc = self._require()
        msg = kc.session.msg("kernel_info_request", {})
        kc.control_channel.send(msg)
        self._probe = (msg["header"]["msg_id"], time.monotonic())

    async def _identities(self, timeout: float) -> list[str]:
        """Session ids in the replies to our probe (control answers while a cell runs)."""
        found: list[str] = []
        end = time.monotonic() + timeout
        kc = self._require()
        while self._probe is not None:
            try:
                reply = await kc.get_control_msg(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if reply["parent_header"].get("msg_id") == self._probe[0]:
                found.append(str(reply["header"].get("session", "")))
                self._probe = None
        return found

    async def _identify(self, timeout: float) -> str | None:
        self._ask_identity()
        found = await self._identities(timeout)
        return found[0] if found else None

    async def is_alive(self) -> bool:
        if self._kc is None or self._replaced:
            return False
        if self._identity is not None:
            if any(i != self._identity for i in await self._identities(0.0)):
                self._replaced = True
                return False
            if self._probe is None or time.monotonic() - self._probe[1] > self.liveness_interval:
                self._ask_identity()
        if self._kc.hb_channel.is_beating():
            self._silent_since = None
            return True
        # One missed beat on a loaded machine is not a death: a grace period.
        now = time.monotonic()
        if self._silent_since is None:
            self._silent_since = now
        return now - self._silent_since < self.heartbeat_grace

    async def interrupt_kernel(self) -> None:
        """An interrupt_request on the control channel (works whatever the kernelspec
        says), confirmed by the kernel's reply (see ``sandbox.interrupt``)."""
        if not await confirmed_interrupt(self._require()):
            self.log.warning("the kernel attached by %s did not confirm the interrupt",
                             self.connection_file)

    async def restart_kernel(self, *, timeout: float) -> None:
        """Wait for the kernel's supervisor to bring it back; KernelLost if it does not."""
        kc = self._require()
        if kc.hb_channel.is_beating() and not self._replaced:
            identity = await self._identify(2.0)
            self._replaced = identity is not None and identity != self._identity
        if kc.hb_channel.is_beating() and not self._replaced:
            raise KernelLost(
                "the cell ignored the interrupt, and this kernel "
                f"(attached by {self.connection_file}) was not started by codeact, so it "
                "cannot be restarted from here; it is still running that cell. Restart it "
                "yourself (e.g. `docker restart`, or Kernel > Restart in Jupyter), then attach "
                "again."
            )
        kc.stop_channels()
        self._kc = None
        try:
            if self.restart_wait <= 0:
                raise KernelStartError("restart_wait is 0")
            await self._connect(self.restart_wait)
        except KernelStartError as exc:
            raise KernelLost(
                f"the kernel attached by {self.connection_file} died, and nothing brought it "
                f"back within {self.restart_wait:g}s; codeact cannot relaunch a kernel it did "
                "not start. Give it a supervisor that restarts it (a container restart policy), "
                f"or start a new one and attach again. ({exc})"
            ) from None

    def death_cause(self, before: Counters) -> str:
        if self._replaced:
            return "it was relaunched by whatever supervises it: another process answers"
        return f"its heartbeat stopped for {self.heartbeat_grace:g}s"

    async def shutdown_kernel(self) -> None:
        kc, self._kc = self._kc, None
        if kc is not None:
            if self.shutdown_on_close:
                kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
                try:  # the reply says the request left before the channels close
                    await asyncio.wait_for(kc.get_control_msg(timeout=2), 3)
                except Exception:  # queue.Empty or a timeout: the kernel is not ours to wait for
                    pass
            kc.stop_channels()
        self.remove_folders()


async def _answers(kc: AsyncKernelClient, timeout: float) -> bool:
    """Whether the kernel answers kernel_info on shell, with iopub live, within ``timeout``.

    Not jupyter_client's wait_for_ready: for a kernel it did not start, that takes one
    late heartbeat for a death, and a kernel still starting on a loaded machine is late
    (measured: "Kernel died before replying to kernel_info" at load 10 on 2 cores). A
    death once attached is is_alive's business, with its heartbeat_grace.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        asked = kc.kernel_info()
        end = time.monotonic() + min(1.0, left)
        while (wait := end - time.monotonic()) > 0:
            try:
                msg = await kc.get_shell_msg(timeout=wait)
            except queue.Empty:
                break
            if msg["parent_header"].get("msg_id") == asked:
                try:  # its status on iopub proves the subscription is live
                    await kc.get_iopub_msg(timeout=0.2)
                    return True
                except queue.Empty:
                    break
    return False


def _reroot_ipc(info: dict[str, Any], path: Path) -> dict[str, Any]:
    """ipc sockets named by their path inside a container (``/conn/kernel``) are found
    next to the connection file on the host, where the container's folder is bound."""
    if info.get("transport") != "ipc":
        return info
    ip = Path(str(info["ip"]))
    beside = path.parent / ip.name
    if not Path(f"{ip}-{info['shell_port']}").exists() and Path(
        f"{beside}-{info['shell_port']}"
    ).exists():
        return {**info, "ip": str(beside)}
    return info


async def _read_connection_file(path: Path, timeout: float) -> dict[str, Any]:
    # A container writes the file once its sockets are bound, so it may not exist yet,
    # or be half written, when the agent starts.
    deadline = time.monotonic() + timeout
    problem = "it does not exist"
    while True:
        try:
            info = json.loads(path.read_text())
            if isinstance(info, dict) and {"key", "transport", "ip", "shell_port"} <= set(info):
                return info
            problem = "it lacks key, transport, ip or shell_port"
        except FileNotFoundError:
            problem = "it does not exist"
        except (OSError, ValueError) as exc:
            problem = f"it is not readable JSON ({exc})"
        if time.monotonic() >= deadline:
            raise KernelStartError(
                f"connection file {path} is not usable after {timeout:g}s: {problem}"
            )
        await asyncio.sleep(0.1)


class ConnectionFileSession(SessionFactory):
    """``ConnectionFileSession(connection_file=..., timeout=...)``: a KernelSession on a
    :class:`ConnectionFileKernelManager` (keywords naming KernelSession traits configure
    the session, the others the manager)."""

    manager_class = ConnectionFileKernelManager
