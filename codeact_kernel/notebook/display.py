"""Live progress of an agent run inside a notebook cell, updated in place.

Everything shown here came from the sandbox or from the model, and the notebook trusts
the outputs of a running cell: bundles go through the output firewall, and text that is
interpolated into Markdown is escaped first.
"""

from __future__ import annotations

import time
from typing import Any

from IPython.core.formatters import format_display_data
from IPython.display import DisplayHandle, Markdown, display

from ..agent.results import AgentEvent, RunResult
from ..render.escape import escape_markdown, escape_terminal, markdown_code
from ..render.firewall import OutputFirewall


class LiveDisplay:
    """Per step: the highlighted code, then its outputs as they come; one status line."""

    def __init__(self, started: float, firewall: OutputFirewall) -> None:
        self.started = started
        self.firewall = firewall
        self.tokens = 0
        self.step = 0
        self.status: DisplayHandle = display(Markdown(self._status("starting")),
                                             display_id=True)

    def _status(self, text: str) -> str:
        elapsed = time.monotonic() - self.started
        # A step's status is the kernel's word (its execute_reply), so it is escaped too.
        return (f"*codeact · step {self.step} · {elapsed:.1f}s · {self.tokens} tokens · "
                f"{escape_markdown(text)}*")

    def on_event(self, event: AgentEvent) -> None:
        self.step = event.step
        kind, data = event.kind, event.data
        if kind == "thinking":
            self.status.update(Markdown(self._status("waiting for the model")))
        elif kind == "code":
            display(Markdown(f"**Step {event.step}**"))
            # A fence, not IPython's Code: its LaTeX form would carry the model's text
            # into MathJax, and its HTML form needs a <style> the firewall would strip.
            display(Markdown(markdown_code(str(data))))
            self.status.update(Markdown(self._status("running the code")))
        elif kind == "output":
            self._show_output(data)
        elif kind == "blocked":
            display(Markdown(f"**Step {event.step}: blocked by policy.** "
                             f"{escape_markdown(str(data))}"))
        elif kind == "step_end":
            self.tokens += data.prompt_tokens + data.completion_tokens
            self.status.update(Markdown(self._status(f"step {event.step} {data.status}")))

    def _show_output(self, output: Any) -> None:
        kind = output.output_type
        # Colours stay (Jupyter paints them); other control sequences would reach a
        # terminal IPython's terminal.
        if kind == "stream":
            print(escape_terminal(output.text, keep_colors=True), end="")
        elif kind == "error":
            print(escape_terminal("\n".join(output.traceback), keep_colors=True))
        else:
            self._show_bundle(output.get("data", {}), output.get("metadata", {}))

    def _show_bundle(self, data: Any, metadata: Any) -> None:
        filtered = self.firewall.filter_bundle(data, metadata)
        display(filtered.data, metadata=filtered.metadata, raw=True)

    def finish(self, result: RunResult) -> None:
        self.status.update(Markdown(self._status(f"done: {result.status}")))
        if result.ok:
            # An answer given on the last call, after a budget ran out, says so.
            why = f" ({escape_markdown(result.reason)})" if result.reason else ""
            display(Markdown(f"**Final answer**{why}"))
            # Decoded on the host, but from values the sandbox chose: filtered like the rest.
            self._show_bundle(*format_display_data(result.answer))
        else:
            display(Markdown(f"**No answer ({result.status}):** "
                             f"{escape_markdown(result.reason)}"))
        display(Markdown(f"*trace: `{escape_markdown(str(result.trace_path))}`*"))
