"""A kernel from a Jupyter Server, Kernel Gateway or Enterprise Gateway.

:class:`GatewayKernelManager` starts its kernel with ``POST /api/kernels``, talks to
it over the channels websocket, interrupts and restarts it through the REST API, and
deletes it at the end. A kernel the gateway lost (deleted, culled, its pod gone) is
replaced by a new one, and the result says that its state was lost. Host tools cross
the gateway on the Jupyter stdin channel (kernels/stdin.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Int, Unicode

from ..errors import GatewayError, KernelStartError, SessionClosed
from ..sandbox.cgroups import Counters
from .gateway_client import MAX_BACKLOG, MAX_INCOMING_MESSAGE, GatewayChannels, GatewayClient
from .manager import KernelChannels, SessionKernelManager, wait_until_ready
from .session import SessionFactory


class GatewayKernelManager(SessionKernelManager):
    """A kernel started on a Jupyter Server, Kernel Gateway or Enterprise Gateway, and
    deleted there when the session closes.

    Configured under ``GatewayKernelManager`` or, as before managers were passed in,
    ``GatewaySession`` (``c.GatewaySession.url = ...``).
    """

    url = Unicode(
        "", help="Base URL of a Jupyter Server, Kernel Gateway or Enterprise Gateway "
        "(http[s]://host:port[/base_url]); the kernel is started there over its REST API."
    ).tag(config=True)
    token_env = Unicode(
        "", help="Name of the environment variable holding the gateway's token, sent as "
        "'Authorization: token ...' (the token itself is never a config value)."
    ).tag(config=True)
    kernel_name = Unicode("python3", help="Kernelspec name to start on the gateway.").tag(
        config=True
    )
    kernel_env = Dict(
        value_trait=Unicode(), help="Environment sent with the start request; Enterprise "
        "Gateway hands KERNEL_* variables to the kernel (KERNEL_USERNAME, KERNEL_NAMESPACE)."
    ).tag(config=True)
    request_timeout = Float(
        20.0, help="Seconds one REST call to the gateway may take (starting a kernel may take "
        "KernelSession.startup_timeout)."
    ).tag(config=True)
    liveness_interval = Float(
        2.0, help="Seconds between checks, while a cell runs, that the gateway still has the "
        "kernel (a kernel deleted or culled there sends nothing on the websocket)."
    ).tag(config=True)
    validate_cert = Bool(True, help="Verify the gateway's TLS certificate.").tag(config=True)
    max_message_bytes = Int(
        MAX_INCOMING_MESSAGE, help="Largest message read from the kernel's websocket (each "
        "is parsed whole before the session's output budget sees it). A larger one closes "
        "the websocket; the kernel then counts as lost and is restarted, with its state."
    ).tag(config=True)
    max_backlog_bytes = Int(
        MAX_BACKLOG, help="Bytes of unread messages the host holds per channel (the "
        "websocket is read also between steps, while the agent awaits its model); past "
        "it the oldest are dropped, as ZMQ's receive limit does for a local kernel."
    ).tag(config=True)

    @classmethod
    def section_names(cls) -> list[str]:
        # Config written before managers were passed in names the session class.
        return ["GatewaySession", *super().section_names()]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client: GatewayClient | None = None
        self.kernel_id: str | None = None
        self._kc: GatewayChannels | None = None
        self._probed = 0.0
        self._lost: str | None = None

    @property
    def has_kernel(self) -> bool:
        return self._kc is not None

    @property
    def channels(self) -> KernelChannels:
        return self._require()

    def _require(self) -> GatewayChannels:
        if self._kc is None:
            raise SessionClosed("the kernel session is not running; call start() first")
        return self._kc

    def _token(self) -> str:
        if not self.token_env:
            return ""
        token = os.environ.get(self.token_env)
        if token is None:
            raise GatewayError(
                f"the gateway token variable {self.token_env} is not set in the environment"
            )
        return token

    async def start_kernel(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        if self._kc is None:
            self.open_folders(runtime_dir, work_dir)
            await self._connect(timeout)

    async def _connect(self, timeout: float) -> None:
        if not self.url:
            raise GatewayError("no gateway URL configured (GatewaySession.url)")
        if self.client is None:
            self.client = GatewayClient(
                self.url, self._token(), token_source=f"${self.token_env}" if self.token_env
                else "a token variable (--gateway-token-env)",
                request_timeout=self.request_timeout, validate_cert=self.validate_cert,
            )
        if self.kernel_id is None:
            self.kernel_id = await self.client.start_kernel(
                self.kernel_name, dict(self.kernel_env), timeout
            )
        self._kc = await self.client.connect(self.kernel_id, self.request_timeout,
                                             self.max_message_bytes, self.max_backlog_bytes)
        self._lost = None
        await wait_until_ready(self._kc, timeout)
        self.isolation = [f"gateway kernel: {self.kernel_name} {self.kernel_id} at {self.url}; "
                          "its isolation is the gateway's (kernelspec, container, pod)"]

    async def is_alive(self) -> bool:
        if self._kc is None or self.client is None or self.kernel_id is None:
            return False
        if self._kc.lost is not None:
            self._lost = self._kc.lost
            return False
        now = time.monotonic()
        if now - self._probed >= self.liveness_interval:
            self._probed = now
            try:
                model = await self.client.kernel_model(
                    self.kernel_id, timeout=min(self.request_timeout, 5.0)
                )
            except GatewayError:
                return True  # a slow gateway is not a dead kernel; the websocket tells
            if model is None:
                self._lost = "the gateway no longer has the kernel (deleted or culled)"
                return False
        return True

    async def interrupt_kernel(self) -> None:
        """POST /api/kernels/{id}/interrupt: the gateway signals or messages the kernel."""
        self._require()
        assert self.client is not None and self.kernel_id is not None
        await self.client.interrupt(self.kernel_id)

    async def restart_kernel(self, *, timeout: float) -> None:
        """Restart through the gateway, or start a new kernel if the gateway lost it."""
        self._require()
        if not await self._await_autorestart(timeout):
            await self._restart_or_replace(timeout)

    async def _await_autorestart(self, timeout: float) -> bool:
        # A kernel that died by itself is being relaunched by the gateway's restarter: a
        # restart from here would race with it (measured: a hung kernel, or HTTP 500).
        kc = self._require()
        if not kc.autorestarting:
            return False
        kc.lost, kc.autorestarting = None, False
        try:
            await wait_until_ready(kc, timeout)
        except KernelStartError:
            return False
        self._lost = None
        return True

    async def _restart_or_replace(self, timeout: float) -> None:
        assert self.client is not None and self.kernel_id is not None
        # A new websocket after the restart: the old one saw the shutdown, and some
        # gateways end it.
        self._require().stop_channels()
        self._kc = None
        if not await self.client.restart(self.kernel_id, timeout):
            lost, self.kernel_id = self.kernel_id, None
            try:
                await self.client.delete(lost)
            except GatewayError:
                pass  # it is gone, or the gateway's culler will reclaim it
        await self._connect(timeout)

    def death_cause(self, before: Counters) -> str:
        return self._lost or "the gateway reported it gone"

    async def shutdown_kernel(self) -> None:
        """Close the websocket and delete the kernel on the gateway (bounded, best effort)."""
        kc, self._kc = self._kc, None
        if kc is not None:
            kc.stop_channels()
        client, self.client = self.client, None
        kernel_id, self.kernel_id = self.kernel_id, None
        try:
            if client is not None and kernel_id is not None:
                await client.delete(kernel_id)
        except GatewayError:
            pass  # unreachable now: the gateway's culler will reclaim the kernel
        finally:
            if client is not None:
                client.close()
            self.remove_folders()


class GatewaySession(SessionFactory):
    """``GatewaySession(url=..., token_env=..., timeout=...)``: a KernelSession on a
    :class:`GatewayKernelManager` (keywords naming KernelSession traits configure the
    session, the others the manager)."""

    manager_class = GatewayKernelManager
