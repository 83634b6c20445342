"""codeact_kernel: a CodeAct agent whose code runs in a sandboxed IPython kernel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CodeActError,
    GatewayError,
    KernelLost,
    KernelStartError,
    ModelError,
    PolicyViolation,
    SandboxUnavailable,
    SessionClosed,
    ToolError,
    TraceError,
)

if TYPE_CHECKING:
    from .agent import Agent
    from .gateway_session import GatewaySession
    from .remote import ConnectionFileSession
    from .results import AgentEvent, ErrorInfo, ExecutionResult, RunResult
    from .sandbox import SandboxConfig
    from .session import KernelSession
    from .tools import Tool, tool

__version__ = "0.1.0"

# Loaded on first use: the kernelspec launcher imports this package on every
# kernel start and must not pay for jupyter_client, zmq or the agent stack.
_LAZY = {
    "Agent": "agent",
    "AgentEvent": "results",
    "RunResult": "results",
    "ErrorInfo": "results",
    "ExecutionResult": "results",
    "SandboxConfig": "sandbox",
    "KernelSession": "session",
    "ConnectionFileSession": "remote",
    "GatewaySession": "gateway_session",
    "Tool": "tools",
    "tool": "tools",
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
    from .magic import load_ipython_extension as load

    load(ip)
