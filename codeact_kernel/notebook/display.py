"""Live progress of an agent run inside a notebook cell, updated in place."""

from __future__ import annotations

import time
from typing import Any

from IPython.display import Code, DisplayHandle, Markdown, display

from ..agent.results import AgentEvent, RunResult


class LiveDisplay:
    """Per step: the highlighted code, then its outputs as they come; one status line."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.tokens = 0
        self.step = 0
        self.status: DisplayHandle = display(Markdown(self._status("starting")),
                                             display_id=True)

    def _status(self, text: str) -> str:
        elapsed = time.monotonic() - self.started
        return f"*codeact · step {self.step} · {elapsed:.1f}s · {self.tokens} tokens · {text}*"

    def on_event(self, event: AgentEvent) -> None:
        self.step = event.step
        kind, data = event.kind, event.data
        if kind == "thinking":
            self.status.update(Markdown(self._status("waiting for the model")))
        elif kind == "code":
            display(Markdown(f"**Step {event.step}**"))
            display(Code(data, language="python"))
            self.status.update(Markdown(self._status("running the code")))
        elif kind == "output":
            self._show_output(data)
        elif kind == "blocked":
            display(Markdown(f"**Step {event.step}: blocked by policy.** {data}"))
        elif kind == "step_end":
            self.tokens += data.prompt_tokens + data.completion_tokens
            self.status.update(Markdown(self._status(f"step {event.step} {data.status}")))

    def _show_output(self, output: Any) -> None:
        kind = output.output_type
        if kind == "stream":
            print(output.text, end="")
        elif kind == "error":
            print("\n".join(output.traceback))
        else:
            display(dict(output.get("data", {})), metadata=dict(output.get("metadata", {})),
                    raw=True)

    def finish(self, result: RunResult) -> None:
        self.status.update(Markdown(self._status(f"done: {result.status}")))
        if result.ok:
            display(Markdown("**Final answer**"))
            display(result.answer)
        else:
            display(Markdown(f"**No answer ({result.status}):** {result.reason}"))
        display(Markdown(f"*trace: `{result.trace_path}`*"))
