"""codeact_kernel: a CodeAct agent whose code runs in a sandboxed IPython kernel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CodeActError,
    GatewayError,
    HandoffError,
    KernelLost,
    KernelStartError,
    ModelError,
    PolicyViolation,
    SandboxUnavailable,
    SessionClosed,
    ToolError,
    TraceError,
)
from .version import __version__

if TYPE_CHECKING:
    from .agent.loop import Agent
    from .agent.results import AgentEvent, RunResult
    from .kernels.connection import ConnectionFileSession
    from .kernels.execution import ErrorInfo, ExecutionResult
    from .kernels.gateway import GatewaySession
    from .kernels.session import KernelSession
    from .sandbox.config import SandboxConfig
    from .tools.tool import Tool, tool


# Loaded on first use: the kernelspec launcher imports this package on every
# kernel start and must not pay for jupyter_client, zmq or the agent stack.
_LAZY = {
    "Agent": "agent.loop",
    "AgentEvent": "agent.results",
    "RunResult": "agent.results",
    "ErrorInfo": "kernels.execution",
    "ExecutionResult": "kernels.execution",
    "SandboxConfig": "sandbox.config",
    "KernelSession": "kernels.session",
    "ConnectionFileSession": "kernels.connection",
    "GatewaySession": "kernels.gateway",
    "Tool": "tools.tool",
    "tool": "tools.tool",
}

__all__ = [
    "Agent",
    "AgentEvent",
    "CodeActError",
    "ConnectionFileSession",
    "ErrorInfo",
    "ExecutionResult",
    "GatewayError",
    "GatewaySession",
    "HandoffError",
    "KernelLost",
    "KernelSession",
    "KernelStartError",
    "ModelError",
    "PolicyViolation",
    "RunResult",
    "SandboxConfig",
    "SandboxUnavailable",
    "SessionClosed",
    "Tool",
    "ToolError",
    "TraceError",
    "__version__",
    "load_ipython_extension",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'codeact_kernel' has no attribute {name!r}")


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext codeact_kernel`` registers the %%agent magics."""
    from .notebook.magic import load_ipython_extension as load

    load(ip)
