"""The run as a notebook: the trace is the audit log.

Outputs go in exactly as Jupyter saves them (full MIME bundles); reasoning,
tokens, cost, timings, tool calls and policy verdicts go in metadata under the
``codeact`` key. The file is rewritten atomically after every step, so a crash
loses at most the step in flight.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

TRACE_FORMAT_VERSION = 1
KERNELSPEC = {
    "name": "codeact-sandbox",
    "display_name": "Python 3 (CodeAct sandbox)",
    "language": "python",
}
BLOCKED_TAG = "blocked"


@dataclass
class StepRecord:
    """Everything the trace keeps about one agent step."""

    step: int
    model_text: str
    code: str | None
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    llm_duration: float = 0.0
    exec_duration: float = 0.0
    status: str = ""
    execution_count: int | None = None
    outputs: list[NotebookNode] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=lambda: {"allowed": True, "violations": []})
    observation_truncated: bool = False
    recovery: str = "none"
    state_lost: bool = False
    reason: str = ""

    @property
    def blocked(self) -> bool:
        return not self.policy.get("allowed", True)

    def metadata(self) -> dict[str, Any]:
        meta = asdict(self)
        for key in ("model_text", "code", "outputs"):
            meta.pop(key)
        return meta


class TraceWriter:
    """Builds and atomically rewrites one run's notebook."""

    def __init__(self, path: Path, run_meta: dict[str, Any]) -> None:
        self.path = path
        self.nb = new_notebook()
        self.nb.metadata["kernelspec"] = dict(KERNELSPEC)
        self.nb.metadata["language_info"] = {"name": "python"}
        self.nb.metadata["codeact"] = {
            "format_version": TRACE_FORMAT_VERSION,
            "task": None,
            "status": "running",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "final_answer": None,
            "runs": [],
            "versions": _versions(),
            **run_meta,
        }

    def add_task(self, task: str) -> None:
        """Open a run; one session (the %%agent magic) may hold several."""
        meta = self.nb.metadata["codeact"]
        if meta["task"] is None:
            meta["task"] = task
        meta["status"] = "running"
        meta["runs"].append({"task": task, "status": "running", "first_cell": len(self.nb.cells)})
        self.nb.cells.append(
            new_markdown_cell(f"## Task\n\n{task}", metadata={"codeact": {"role": "task"}})
        )
        self.save()

    def add_step(self, record: StepRecord) -> None:
        meta = {"codeact": record.metadata()}
        if record.model_text:
            self.nb.cells.append(
                new_markdown_cell(
                    _quote_model_text(record.step, record.model_text),
                    metadata={"codeact": {"role": "model", "step": record.step}},
                )
            )
        if record.code is None:
            pass
        elif record.blocked:
            # A raw cell, so that Run All in JupyterLab never executes blocked code.
            reasons = "; ".join(v.get("message", "") for v in record.policy.get("violations", []))
            cell = new_raw_cell(record.code, metadata=meta)
            cell.metadata["tags"] = [BLOCKED_TAG]
            cell.metadata["raw_mimetype"] = "text/x-python"
            self.nb.cells.append(cell)
            self.nb.cells.append(
                new_markdown_cell(
                    f"> **Blocked by policy (step {record.step}):** {reasons}",
                    metadata={"codeact": {"role": "verdict", "step": record.step}},
                )
            )
        else:
            cell = new_code_cell(record.code, metadata=meta)
            cell.outputs = list(record.outputs)
            cell.execution_count = record.execution_count
            self.nb.cells.append(cell)
        self.save()

    def finish(self, status: str, final_answer: Any, totals: dict[str, Any]) -> None:
        """Close the current run with its status, answer and totals, then validate."""
        meta = self.nb.metadata["codeact"]
        run = meta["runs"][-1] if meta["runs"] else {}
        run.update(status=status, final_answer=final_answer, totals=totals)
        meta.update(status=status, final_answer=final_answer, totals=totals)
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        summary = f"## Result: {status}"
        if final_answer is not None:
            summary += "\n\n```\n" + _answer_text(final_answer) + "\n```"
        self.nb.cells.append(new_markdown_cell(summary, metadata={"codeact": {"role": "result"}}))
        nbformat.validate(self.nb)
        self.save()

    def save(self) -> None:
        """Write to a temporary file in the same folder, fsync, then rename over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                nbformat.write(self.nb, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def answer_for_trace(value: Any, kind: str, type_name: str = "") -> Any:
    """A JSON description of a final answer: JSON values as they are, others previewed."""
    if kind == "json":
        return value
    described: dict[str, Any] = {"kind": kind}
    if kind in ("dataframe", "series", "ndarray"):
        described["shape"] = list(getattr(value, "shape", ()))
        if kind == "ndarray":
            described["dtype"] = str(value.dtype)
            described["preview"] = str(value)[:5000]
        else:
            described["preview"] = value.to_string(max_rows=30)[:5000]
    elif kind in ("png", "bytes"):
        described["bytes"] = len(value)
        described["preview"] = f"<{kind}, {len(value)} bytes>"
    else:
        described["type"] = type_name
        described["preview"] = str(value)[:5000]
    return described


def _quote_model_text(step: int, text: str) -> str:
    return f"**Step {step} · model**\n\n{text}"


def _answer_text(value: Any) -> str:
    if isinstance(value, dict) and value.get("kind") and "preview" in value:
        return str(value["preview"])
    try:
        return json.dumps(value, indent=2, default=str)[:5000]
    except (TypeError, ValueError):
        return repr(value)[:5000]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("codeact-kernel", "jupyter-client", "ipykernel", "litellm", "nbformat"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
