"""Kernels the agent did not start: attached by connection file, or from a Jupyter gateway.

Both keep KernelSession's API and its execute loop (outputs, timeouts, the
interrupt, death detection, startup code); what differs is how the kernel is
reached, interrupted and "restarted":

* :class:`ConnectionFileSession` talks ZMQ to a running kernel (a container,
  a kernel started by someone else). It interrupts with ``interrupt_request``
  on the control channel and notices death by the heartbeat. It cannot
  relaunch a process it does not own: after a death it waits ``restart_wait``
  seconds for whatever supervises the kernel to bring it back on the same
  connection file; a cell that ignores the interrupt raises KernelLost
  (ipykernel honours ``shutdown_request`` only once the cell returns).
* :class:`GatewaySession` starts its kernel on a Jupyter Server, Kernel
  Gateway or Enterprise Gateway, and uses the gateway's REST API to interrupt,
  restart (or replace a kernel the gateway lost) and delete it.

Host tools reach both through the Jupyter stdin channel by default (see
kernels/stdin.py): it crosses the gateway's websocket and needs no shared folder.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import queue
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from traitlets import Bool, Float, Unicode, default
from traitlets.config import Configurable

from ..errors import CodeActError, KernelLost, KernelStartError, SessionClosed
from .session import KernelSession

_CWD = "__import__('os').getcwd()"


class RemoteSession(KernelSession):
    """What the kernels we do not start have in common: no cgroups, and a host folder for
    the session's own files only.

    ``work_path`` stays a host folder: the kernel's own working folder is only reported
    (``kernel_work_dir``), never written to from the host, since a path a remote kernel
    names must not steer host writes.
    """

    @default("tool_transport")
    def _default_tool_transport(self) -> str:
        return "stdin"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_cwd = ""

    @property
    def kernel_work_dir(self) -> str:
        return self.kernel_cwd

    @property
    def shares_work_folder(self) -> bool:
        return False

    async def async_start(self) -> KernelSession:
        if self.kc is not None:
            return self
        runtime = Path(self.runtime_dir)
        runtime.mkdir(mode=0o711, parents=True, exist_ok=True)
        # Named like local sessions' folders, so a killed owner's folder is swept too.
        self.session_dir = Path(tempfile.mkdtemp(prefix=f"s{os.getpid()}-", dir=runtime))
        try:
            self.work_path.mkdir(mode=0o755, parents=True, exist_ok=True)
            await self._connect(self.startup_timeout)
            await self._learn_cwd()
            await self.async_run_startup_code()
        except BaseException:
            await self.async_shutdown()
            raise
        return self

    async def _connect(self, timeout: float) -> None:
        """Reach the kernel (set ``self.kc``) and wait until it answers, within ``timeout``."""
        raise NotImplementedError

    async def _wait_ready(self, timeout: float) -> None:
        # The outer bound guards a zmq recv that would wait after its poll said ready.
        try:
            await asyncio.wait_for(self.kc.wait_for_ready(timeout=timeout), timeout + 5)
        except (RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
            raise KernelStartError(f"the kernel did not answer within {timeout:g}s: {exc}") from exc

    async def _learn_cwd(self) -> None:
        result = await self.async_execute("", silent=True, store_history=False,
                                          user_expressions={"cwd": _CWD}, timeout=10)
        try:
            text = result.user_expressions["cwd"]["data"]["text/plain"]
            self.kernel_cwd = str(ast.literal_eval(text))
            self.isolation.append(f"kernel working folder (kernel side): {self.kernel_cwd}")
        except (KeyError, TypeError, ValueError, SyntaxError) as exc:
            raise KernelStartError(
                "the kernel did not report its working folder; is it an IPython kernel? "
                f"({result.reason or exc})"
            ) from None

    def _remove_session_dir(self) -> None:
        if self.session_dir is not None:
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self.session_dir = None

    def _ensure_running(self) -> None:
        if self.kc is None:
            raise SessionClosed("the kernel session is not running; call start() first")

    def _cgroups(self) -> list[Path]:
        return []  # the kernel's limits are its host's business



class ConnectionFileSession(RemoteSession):
    """A running kernel, attached by its connection file; it is left running at the end."""

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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._silent_since: float | None = None
        self._identity: str | None = None  # the kernel process's session id
        self._probe: tuple[str, float] | None = None  # (msg_id, sent at)
        self._replaced = False

    @property
    def _path(self) -> Path:
        return Path(self.connection_file).expanduser().resolve()

    async def _connect(self, timeout: float) -> None:
        if not self.connection_file:
            raise KernelStartError("no connection file configured "
                                   "(ConnectionFileSession.connection_file)")
        deadline = time.monotonic() + timeout
        info = _reroot_ipc(await _read_connection_file(self._path, timeout), self._path)
        kc = AsyncKernelClient(parent=self)
        kc.load_connection_info(info)  # type: ignore[arg-type]  # checked keys above
        kc.start_channels()
        self.kc, self._silent_since, self._probe, self._replaced = kc, None, None, False
        where = (f"ipc sockets {info.get('ip')}-*" if info.get("transport") == "ipc"
                 else f"tcp {info.get('ip')}")
        try:
            await self._wait_ready(max(1.0, deadline - time.monotonic()))
        except KernelStartError as exc:
            raise KernelStartError(
                f"the kernel of {self._path} did not answer within {timeout:g}s: is it "
                f"running, and can this process reach its {where}? ({exc})"
            ) from None
        self._identity = await self._identify(5.0)
        self.isolation = [f"attached kernel: connection file {self._path} ({where}); its "
                          "isolation is whatever runs it (a container, another host)"]

    def _ask_identity(self) -> None:
        msg = self.kc.session.msg("kernel_info_request", {})
        self.kc.control_channel.send(msg)
        self._probe = (msg["header"]["msg_id"], time.monotonic())

    async def _identities(self, timeout: float) -> list[str]:
        """Session ids in the replies to our probe (control answers while a cell runs)."""
        found: list[str] = []
        end = time.monotonic() + timeout
        while self._probe is not None:
            try:
                reply = await self.kc.get_control_msg(timeout=max(0.0, end - time.monotonic()))
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

    async def async_is_alive(self) -> bool:
        if self.kc is None or self._replaced:
            return False
        if self._identity is not None:
            if any(i != self._identity for i in await self._identities(0.0)):
                self._replaced = True
                return False
            if self._probe is None or time.monotonic() - self._probe[1] > self.liveness_interval:
                self._ask_identity()
        if self.kc.hb_channel.is_beating():
            self._silent_since = None
            return True
        # One missed beat on a loaded machine is not a death: a grace period.
        now = time.monotonic()
        if self._silent_since is None:
            self._silent_since = now
        return now - self._silent_since < self.heartbeat_grace

    async def async_interrupt(self) -> None:
        """An interrupt_request on the control channel (works whatever the kernelspec says)."""
        self._ensure_running()
        self.kc.control_channel.send(self.kc.session.msg("interrupt_request", {}))

    async def async_restart(self) -> None:
        """Wait for the kernel's supervisor to bring it back; KernelLost if it does not."""
        self._ensure_running()
        if self.kc.hb_channel.is_beating() and not self._replaced:
            identity = await self._identify(2.0)
            self._replaced = identity is not None and identity != self._identity
        if self.kc.hb_channel.is_beating() and not self._replaced:
            raise KernelLost(
                f"the cell ignored the interrupt for {self.interrupt_grace:g}s, and this kernel "
                f"(attached by {self.connection_file}) was not started by codeact, so it "
                "cannot be restarted from here; it is still running that cell. Restart it "
                "yourself (e.g. `docker restart`, or Kernel > Restart in Jupyter), then attach "
                "again."
            )
        self.kc.stop_channels()
        self.kc = None
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
        self.restarts += 1
        await self.async_run_startup_code()

    def _death_cause(self, before: object) -> str:
        if self._replaced:
            return "it was relaunched by whatever supervises it: another process answers"
        return f"its heartbeat stopped for {self.heartbeat_grace:g}s"

    async def async_shutdown(self) -> None:
        kc, self.kc = self.kc, None
        if kc is not None:
            if self.shutdown_on_close:
                kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
                try:  # the reply says the request left before the channels close
                    await asyncio.wait_for(kc.get_control_msg(timeout=2), 3)
                except Exception:  # queue.Empty or a timeout: the kernel is not ours to wait for
                    pass
            kc.stop_channels()
        self.kernel_cwd = ""
        self._remove_session_dir()



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


def make_session(parent: Configurable | None = None) -> KernelSession:
    """The session the configuration asks for: a kernel by connection file, one from a
    gateway, or (by default) a local sandboxed kernel."""
    from .gateway import GatewaySession

    attached = ConnectionFileSession(parent=parent)
    gateway = GatewaySession(parent=parent)
    if attached.connection_file and gateway.url:
        raise CodeActError(
            "both a connection file and a gateway URL are configured; choose one kernel"
        )
    if attached.connection_file:
        return attached
    if gateway.url:
        return gateway
    return KernelSession(parent=parent)
