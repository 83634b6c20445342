"""What one execution in a kernel produced, as data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from nbformat import NotebookNode

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Recovery = Literal["none", "interrupted", "restarted"]


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


@dataclass
class ErrorInfo:
    """An exception raised by the executed code; the traceback has no ANSI codes."""

    ename: str
    evalue: str
    traceback: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.traceback) or f"{self.ename}: {self.evalue}"


@dataclass
class ExecutionResult:
    """The structured outcome of :meth:`KernelSession.execute`.

    ``status`` is the kernel's reply status ("ok", "error", "aborted"), or
    "timeout" / "died" when the kernel could not reply, or "lost" when its reply
    was lost on the way (``lost_channels``).  ``recovery`` says what
    the session did about it, and ``state_lost`` whether the kernel's variables
    survived.  ``duration`` is the wall time of the whole call in seconds,
    including any interrupt or restart it needed.
    """

    status: str
    execution_count: int | None = None
    outputs: list[NotebookNode] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    error: ErrorInfo | None = None
    duration: float = 0.0
    timed_out: bool = False
    kernel_died: bool = False
    recovery: Recovery = "none"
    state_lost: bool = False
    reason: str = ""
    user_expressions: dict[str, Any] = field(default_factory=dict)
    # Outputs that clear_output() removed after they were shown, and how many more were.
    cleared_outputs: list[NotebookNode] = field(default_factory=list)
    cleared_dropped: int = 0
    msg_id: str = ""  # of the execute_request
    # Messages for this execution that the host could not use (malformed or forged):
    # their count, and the first reasons.
    rejected: list[str] = field(default_factory=list)
    rejected_count: int = 0
    # Messages answering other requests that arrived meanwhile, by request id.
    foreign: dict[str, int] = field(default_factory=dict)
    # Requests through the egress proxy since the previous execute (EgressRecord dicts).
    egress: list[dict[str, Any]] = field(default_factory=list)
    # Output past the budget: {"bytes": N, "messages": M} dropped, or None.
    output_dropped: dict[str, int] | None = None
    # Channels whose connection dropped (a message over the size limit): messages lost.
    lost_channels: list[str] = field(default_factory=list)
    # What the host cut or lost, for the model and the trace (also in ``reason``).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def set_reason(self, text: str) -> None:
        """Say why the execution ended as it did, ahead of the notes."""
        self.reason = "; ".join([text, *self.notes])

    def add_note(self, note: str) -> None:
        """Record something the host did to this result; it joins ``reason`` too."""
        if note:
            self.notes.append(note)
            self.reason = f"{self.reason}; {note}" if self.reason else note
