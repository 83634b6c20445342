"""Live terminal display of an agent run (the CLI's face).

Everything printed here that the kernel or the model wrote is escaped first (control
characters shown as ``\\x1b``), so it cannot drive the operator's terminal; only this
module's own colours reach it as control sequences.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from ..agent.results import AgentEvent, RunResult
from ..render.escape import escape_terminal

BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
RED, GREEN, YELLOW = "\x1b[31m", "\x1b[32m", "\x1b[33m"


class Spinner:
    """A progress line on stderr while the model thinks (only on a terminal)."""

    def __init__(self) -> None:
        self._label = ""
        self._since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tokens = 0

    def start(self, label: str) -> None:
        self.stop()
        if not sys.stderr.isatty():
            return
        self._label, self._since, self.tokens = label, time.monotonic(), 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        frames = "|/-\\"
        i = 0
        while not self._stop.wait(0.2):
            elapsed = time.monotonic() - self._since
            sys.stderr.write(
                f"\r{frames[i % 4]} {self._label} {elapsed:4.1f}s, {self.tokens} tokens  "
            )
            sys.stderr.flush()
            i += 1

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


class TerminalDisplay:
    """Prints each step as it happens: code, outputs, timing; then the answer."""

    def __init__(self, quiet: bool = False, out: TextIO | None = None) -> None:
        self.quiet = quiet
        self.out = out or sys.stdout
        self.color = self.out.isatty()
        self.spinner = Spinner()

    def _c(self, code: str, text: str) -> str:
        text = escape_terminal(text)
        return f"{code}{text}{RESET}" if self.color else text

    def _print(self, text: str = "", end: str = "\n") -> None:
        """Write text that is already escaped (through ``_c`` or ``escape_terminal``)."""
        if not self.quiet:
            self.out.write(text + end)
            self.out.flush()

    def on_event(self, event: AgentEvent) -> None:
        kind, data = event.kind, event.data
        if kind == "thinking":
            self.spinner.start(f"step {event.step}: waiting for the model")
        elif kind == "token":
            self.spinner.tokens += 1
        elif kind == "code":
            self.spinner.stop()
            self._print(self._c(BOLD, f"── step {event.step} ") + "─" * 40)
            self._print(self._c(DIM, str(data)))
            self._print(self._c(BOLD, "── output"))
        elif kind == "output":
            self._print(escape_terminal(_output_text(data)), end="")
        elif kind == "blocked":
            self.spinner.stop()
            self._print(self._c(YELLOW, f"── step {event.step}: blocked by policy: {data}"))
        elif kind == "step_end":
            self.spinner.stop()
            self._step_footer(data)

    def _step_footer(self, record: Any) -> None:
        if record.status == "no-code":
            self._print(self._c(YELLOW, f"── step {record.step}: the model wrote no code"))
            return
        tools = ", ".join(c["name"] for c in record.tool_calls) or "none"
        line = (f"── step {record.step}: {record.status}, model {record.llm_duration:.1f}s, "
                f"code {record.exec_duration:.2f}s, tokens {record.prompt_tokens}+"
                f"{record.completion_tokens}, tools: {tools}")
        if record.reason and record.recovery != "none":
            line += f"\n   {record.reason}"
        if record.last_call:
            line += f"\n   the last call for an answer: the run's {record.last_call} ran out"
        self._print(self._c(DIM, line))

    def stop(self) -> None:
        self.spinner.stop()

    def summary(self, result: RunResult) -> None:
        self.spinner.stop()
        if result.ok:
            head = self._c(GREEN + BOLD, "Final answer:")
            print(f"{head} {escape_terminal(_answer_repr(result.answer))}", file=self.out)
            if result.reason:  # an answer given on the last call says so
                print(self._c(DIM, result.reason), file=self.out)
        else:
            print(self._c(RED + BOLD, f"No answer ({result.status}): {result.reason}"),
                  file=self.out)
        cost = f", cost ${result.cost:.4f}" if result.cost else ""
        print(f"{len(result.steps)} steps in {result.duration:.1f}s, tokens "
              f"{result.prompt_tokens}+{result.completion_tokens}{cost}", file=self.out)
        print(f"Trace: {escape_terminal(str(result.trace_path))}", file=self.out)


def _output_text(output: Any) -> str:
    kind = output.output_type
    if kind == "stream":
        return str(output.text)
    if kind == "error":
        return f"{output.ename}: {output.evalue}\n"
    data = output.get("data", {})
    for mime in ("image/png", "image/jpeg", "image/svg+xml"):
        if mime in data:
            return f"[{mime} image, {len(data[mime]) * 3 // 4 // 1024} KB, saved in the trace]\n"
    if "text/plain" in data:
        return f"{data['text/plain']}\n"
    return f"[{', '.join(data)}]\n"


def _answer_repr(answer: Any) -> str:
    text = str(answer)
    return text if len(text) < 2000 else text[:2000] + " ..."
