"""How much of one execution's output the host keeps: a byte and a message budget.

Everything the kernel sends is hostile, its volume included. The collector asks the
budget before it keeps an output; once a cap is hit the rest of the execution's output
is dropped (counted, never stored), and a cell that goes on producing as much again
is a flood the session may interrupt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass
class OutputBudget:
    """Counters of one execution against its caps (``max_bytes``, ``max_messages``)."""

    max_bytes: int
    max_messages: int
    kept_bytes: int = 0
    kept_messages: int = 0
    dropped_bytes: int = 0
    dropped_messages: int = 0

    @property
    def exhausted(self) -> bool:
        """Whether a cap was hit: from then on, every output is dropped."""
        return self.dropped_messages > 0

    @property
    def flooding(self) -> bool:
        """Whether the cell went on to produce as much again as the caps allow."""
        return self.dropped_bytes >= self.max_bytes or self.dropped_messages >= self.max_messages

    def room(self) -> int:
        """Bytes that may still be kept (0 once exhausted)."""
        if self.exhausted or self.kept_messages >= self.max_messages:
            return 0
        return max(0, self.max_bytes - self.kept_bytes)

    def keep(self, size: int) -> None:
        self.kept_bytes += size
        self.kept_messages += 1

    def drop(self, size: int, messages: int = 1) -> None:
        self.dropped_bytes += size
        self.dropped_messages += messages

    def note(self) -> str:
        """What was dropped, for the result's reason; empty when nothing was."""
        if not self.exhausted:
            return ""
        return (
            f"output truncated: the cell passed the limit of {_size(self.max_bytes)} or "
            f"{self.max_messages:,} output messages per execution (KernelSession."
            f"max_output_bytes / max_output_messages); {_size(self.dropped_bytes)} in "
            f"{self.dropped_messages:,} messages after it were dropped"
        )

    def as_dict(self) -> dict[str, int]:
        return {"bytes": self.dropped_bytes, "messages": self.dropped_messages}


def content_size(content: dict[str, Any]) -> int:
    """The bytes an output's content holds once kept: its text and MIME values."""
    size = len(str(content.get("text", "")))
    data = content.get("data")
    if isinstance(data, dict):
        size += sum(len(v) if isinstance(v, str) else len(str(v)) for v in data.values())
    traceback = content.get("traceback")
    if isinstance(traceback, list):
        size += sum(len(str(line)) for line in traceback)
    return size


def _size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:,.1f} MiB"
    return f"{n:,} bytes"
