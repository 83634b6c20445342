"""The exception hierarchy of codeact_kernel.

Constructors only store their arguments: they never log, print or touch the
system, so raising one is always safe (the nbclient rule).
"""

from __future__ import annotations


class CodeActError(Exception):
    """Base class of every error raised by codeact_kernel."""


class SandboxUnavailable(CodeActError):
    """The OS sandbox cannot be started on this machine.

    The message always names the fix (for example ``apt-get install bubblewrap``).
    Running without a sandbox is never chosen as a fallback.
    """


class KernelStartError(CodeActError):
    """A kernel process was launched but never answered."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- kernel log tail ---\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail


class HandoffError(CodeActError):
    """A notebook variable could not be sent into the sandbox; the message says which and
    why (a package the kernel lacks, or what failed while the kernel rebuilt it)."""


class SessionClosed(CodeActError):
    """The session was shut down; start a new one."""


class ToolError(CodeActError):
    """A tool is malformed or was called with bad arguments."""


class PolicyViolation(CodeActError):
    """Generated code broke a rule of the AST policy."""

    def __init__(self, rule: str, detail: str, lineno: int | None = None) -> None:
        where = f" (line {lineno})" if lineno is not None else ""
        super().__init__(f"[{rule}]{where} {detail}")
        self.rule = rule
        self.detail = detail
        self.lineno = lineno


class ModelError(CodeActError):
    """The LLM could not be reached or answered something unusable."""


class TraceError(CodeActError):
    """A file is not a readable codeact trace notebook."""


class GatewayError(CodeActError):
    """A Jupyter gateway could not be reached, refused the token, or failed a request."""


class KernelLost(CodeActError):
    """A kernel the session did not start stopped answering, or is stuck in a cell, and
    cannot be restarted from here; the message says what to do."""


class MCPServerError(ToolError):
    """An MCP server failed to start, died, or did not answer in time; the message names it."""


class MCPToolError(ToolError):
    """An MCP tool answered with an error (``isError``); the message is the server's."""


class BenchError(CodeActError):
    """A ``codeact bench`` task file is unusable; the message names the task and the field."""
