"""codeact_kernel: a CodeAct agent whose code runs in a sandboxed IPython kernel."""

from __future__ import annotations

from .errors import (
    CodeActError,
    KernelStartError,
    ModelError,
    PolicyViolation,
    SandboxUnavailable,
    SessionClosed,
    ToolError,
    TraceError,
)
from .results import ErrorInfo, ExecutionResult
from .sandbox import SandboxConfig
from .session import KernelSession

__version__ = "0.1.0"

__all__ = [
    "CodeActError",
    "ErrorInfo",
    "ExecutionResult",
    "KernelSession",
    "KernelStartError",
    "ModelError",
    "PolicyViolation",
    "SandboxConfig",
    "SandboxUnavailable",
    "SessionClosed",
    "ToolError",
    "TraceError",
    "__version__",
]
