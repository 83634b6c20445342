"""Which agent step may call host tools right now.

The kernel's code can outlive its step (a background thread, an IPython hook, a timer,
a forged end-of-step message), and the host cannot tell a leftover caller from the
current step's code by anything the kernel sends. What the host does control is when
it serves calls at all: only while one of its steps runs. Every call outside that
window is refused, and recorded (name and time) for the trace.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# Refused calls kept with their details between two drains; past this only counted.
KEEP_REFUSED = 100
REFUSED_MESSAGE = (
    "no agent step is running: host tools are only served while a step's code runs, so "
    "this call from a thread, hook or timer left behind by earlier code was refused and "
    "recorded in the trace"
)


@dataclass
class RefusedCall:
    """A tool call that arrived while no step was running."""

    name: str
    time: float  # time.time() when it arrived
    reason: str = "no step running"


class StepWindow:
    """The step whose tool calls are served (None: none is).

    ``enforce=False`` serves every call, for servers used outside an agent loop.
    """

    def __init__(self, enforce: bool = True, keep: int = KEEP_REFUSED) -> None:
        self.enforce = enforce
        self.keep = keep
        self._step: int | None = None
        self._lock = threading.Lock()
        self._refused: list[RefusedCall] = []
        self._refused_count = 0

    def open(self, step: int) -> None:
        with self._lock:
            self._step = step

    def close(self) -> None:
        with self._lock:
            self._step = None

    @property
    def step(self) -> int | None:
        with self._lock:
            return self._step

    def admit(self, name: str) -> tuple[bool, int | None]:
        """(served?, the step it belongs to); a refused call is recorded."""
        with self._lock:
            if self._step is not None or not self.enforce:
                return True, self._step
            self._refused_count += 1
            if len(self._refused) < self.keep:
                self._refused.append(RefusedCall(str(name)[:100], time.time()))
            return False, None

    def drain_refused(self) -> tuple[list[RefusedCall], int]:
        """The refused calls kept since the last drain, and how many there were in all."""
        with self._lock:
            kept, count = self._refused, self._refused_count
            self._refused, self._refused_count = [], 0
        return kept, count
