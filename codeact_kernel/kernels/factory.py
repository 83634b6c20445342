"""The kernel the configuration asks for: one place that knows every backend.

The backends' modules do not know each other; choosing between them happens here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CodeActError
from .connection import ConnectionFileKernelManager
from .gateway import GatewayKernelManager
from .local import SandboxKernelManager
from .manager import SessionKernelManager
from .session import KernelSession

if TYPE_CHECKING:
    from .pool import KernelPool


def configured_manager(parent: Any = None) -> SessionKernelManager:
    """An unstarted manager for the configured kernel: one attached by connection file,
    one from a gateway, or (by default) a local sandboxed kernel."""
    attached = ConnectionFileKernelManager(parent=parent)
    gateway = GatewayKernelManager(parent=parent)
    if attached.connection_file and gateway.url:
        raise CodeActError(
            "both a connection file and a gateway URL are configured; choose one kernel"
        )
    if attached.connection_file:
        return attached
    if gateway.url:
        return gateway
    return SandboxKernelManager(parent=parent)


def make_session(parent: Any = None, pool: KernelPool | None = None) -> KernelSession:
    """An unstarted session on the configured kernel; with a warm ``pool``, a kernel the
    manager says a pooled one can stand in for comes from the pool."""
    session = KernelSession(parent=parent)
    manager = configured_manager(session)
    if pool is not None and manager.poolable:
        manager = pool.manager(parent=session)
    session.manager = manager
    return session
