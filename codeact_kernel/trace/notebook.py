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
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell
from nbformat.v4.nbjson import writes as writes_json

from ..errors import TraceError
from ..kernel_side import source as kernel_source
from ..kernels.messages import invalid_output
from ..tools.listing import replay_stubs
from .actions import action_cells
from .record import StepRecord
from .validate import TraceLimits, check_trace, read_trace_text

TRACE_FORMAT_VERSION = 1
# Traces name the review kernelspec: Run All on a trace re-runs the agent's code, and
# a frontend trusts what a running cell outputs, so the outputs pass the output firewall
# and the frontend's key stays out of the sandbox (`codeact kernelspec install`).
KERNELSPEC = {
    "name": "codeact-review",
    "display_name": "Python 3 (CodeAct review, outputs filtered)",
    "language": "python",
}
BLOCKED_TAG = "blocked"
SETUP_TAG = "codeact-setup"
KEEP_REFUSED = 100  # refused tool calls kept with their details per run (all are counted)


class TraceWriter:
    """Builds and atomically rewrites one run's notebook."""

    def __init__(self, path: Path, run_meta: dict[str, Any]) -> None:
        self.path = path
        # Told of each run, step and finish as they are saved (live telemetry export);
        # each may add its own ids to the metadata before it is written.
        self.observers: list[Any] = []
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
        # Collapsed in JupyterLab (and moved to the end of the HTML export): a reviewer
        # reads the task first, and Run All still runs this before any step.
        self.setup = new_code_cell("", metadata={
            "codeact": {"role": "setup"}, "tags": [SETUP_TAG],
            "jupyter": {"source_hidden": True, "outputs_hidden": True}})
        self.nb.cells.append(self.setup)

    def add_task(self, task: str) -> None:
        """Open a run; one session (the %%agent magic) may hold several."""
        meta = self.nb.metadata["codeact"]
        if meta["task"] is None:
            meta["task"] = task
        meta["status"] = "running"
        cell = new_markdown_cell(f"## Task\n\n{task}", metadata={"codeact": {"role": "task"}})
        # The first task opens the notebook, above the (collapsed) replay setup.
        first = 0 if not meta["runs"] and self.nb.cells[:1] == [self.setup] else len(self.nb.cells)
        run = {"task": task, "status": "running", "first_cell": first,
               "started_at": round(time.time(), 6)}
        meta["runs"].append(run)
        for observer in self.observers:
            observer.on_task(run, self.nb, self.path)
        self.nb.cells.insert(first, cell)
        self.save()

    def add_step(self, record: StepRecord) -> None:
        meta = {"codeact": {**record.metadata(), "ended_at": round(time.time(), 6)}}
        for observer in self.observers:
            observer.on_step(record, meta["codeact"])
        if record.model_text or record.code is None:
            # A step without code has no code cell: its record stays on the model's cell.
            model_meta = {"role": "model", "step": record.step}
            if record.code is None:
                model_meta.update(meta["codeact"])
            self.nb.cells.append(
                new_markdown_cell(
                    _quote_model_text(record.step, record.model_text or "*(an empty reply)*"),
                    metadata={"codeact": model_meta},
                )
            )
        if record.code is None:
            self.nb.cells.extend(action_cells(record.step, record.actions, record.tool_calls))
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
        run.update(status=status, final_answer=final_answer, totals=totals,
                   ended_at=round(time.time(), 6))
        for observer in self.observers:
            observer.on_finish(run)
        meta.update(status=status, final_answer=final_answer, totals=totals)
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        summary = f"## Result: {status}"
        if final_answer is not None:
            summary += "\n\n```\n" + _answer_text(final_answer) + "\n```"
        self.nb.cells.append(new_markdown_cell(summary, metadata={"codeact": {"role": "result"}}))
        try:
            nbformat.validate(self.nb)
        except nbformat.ValidationError:
            # The collector checks every output as it arrives, so this is a safety net:
            # the run still ends with a finished trace, without what would not validate.
            meta["dropped_invalid_outputs"] = _drop_invalid_outputs(self.nb)
            nbformat.validate(self.nb)
        self.save(durable=True)

    def add_refused(self, calls: list[dict[str, Any]], count: int) -> None:
        """Record tool calls refused while no step ran, in the latest run (or the notebook
        before any run): their count, and the first ``calls`` (name, time)."""
        if not count:
            return
        meta = self.nb.metadata["codeact"]
        target = meta["runs"][-1] if meta["runs"] else meta
        entry = target.setdefault("refused_tool_calls", {"count": 0, "calls": []})
        entry["count"] += count
        entry["calls"].extend(calls[: max(0, KEEP_REFUSED - len(entry["calls"]))])
        self.save(durable=meta["status"] != "running")

    def save(self, durable: bool = False) -> None:
        """Write to a temporary file in the same folder, then rename over it.

        The rename alone means a killed process leaves the last complete step
        on disk; ``durable`` adds an fsync (power loss), done once per run,
        because it costs milliseconds on every step. Validation also happens
        once per run (``finish``), not on every step. So does nbformat's own
        layout (indented, sorted, sources split into lines): its deep copy and
        pure-Python encoder cost ~10 ms a save at 40 steps, growing with the
        notebook; the compact form between steps is the same notebook, one line.
        """
        self.setup.source = setup_source(self.nb)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(writes_json(self.nb) if durable else json.dumps(self.nb))
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def tool_call_record(call: Any) -> dict[str, Any]:
    """A tool call as the trace keeps it: JSON, with the full result for replay."""
    record: dict[str, Any] = {
        "name": call.name, "arguments": call.arguments, "result": call.result,
        "error": call.error, "started": call.started, "duration": round(call.duration, 6),
    }
    if getattr(call, "step", None) is not None:
        record["step"] = call.step  # the step running when the call arrived
    if call.error is None and call.name != "final_answer":
        record["value"], record["value_kind"] = _replayable(call.value)
    return record


def _drop_invalid_outputs(nb: NotebookNode) -> int:
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for index, output in enumerate(cell.outputs):
            problem = invalid_output(output)
            if problem is not None:
                cell.outputs[index] = new_output(
                    "stream", name="stderr",
                    text=f"[codeact: an output that is not valid nbformat was dropped: "
                         f"{problem}]\n")
                dropped += 1
    return dropped


def _replayable(value: Any) -> tuple[Any, str]:
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind == "pandas.DataFrame":
        split = json.loads(value.to_json(orient="split", date_format="iso"))
        return {"data": split["data"], "columns": split["columns"], "index": split["index"]}, (
            "dataframe"
        )
    if kind == "numpy.ndarray":
        return {"data": value.tolist(), "dtype": str(value.dtype)}, "ndarray"
    try:
        text = json.dumps(value)
        return json.loads(text), "json"
    except (TypeError, ValueError):
        return repr(value), "repr"


def setup_source(nb: NotebookNode) -> str:
    """The replay setup cell: recorded-tool stubs serving the results in ``nb``, in order."""
    recorded: dict[str, list[dict[str, Any]]] = {}
    for cell in nb.cells:  # code cells, and the model's cell of a step of function calls
        for call in cell.metadata.get("codeact", {}).get("tool_calls", []):
            if call.get("name") != "final_answer":
                recorded.setdefault(call["name"], []).append(
                    {k: call[k] for k in ("arguments", "value", "value_kind", "error")
                     if k in call}
                )
    setup = kernel_source("replay_setup.py")
    setup = setup.replace("__RECORDED__", repr(json.dumps(recorded, default=repr)))
    meta = nb.metadata.get("codeact", {})
    # The agent's kernel had np, pd, ... imported at start: the model's code may rely on it.
    imports = "\n\n" + kernel_source("preimports.py") \
        if meta.get("agent", {}).get("preimport") else ""
    return setup + "\n\n" + replay_stubs(meta.get("tools", [])) + imports


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


def load_trace(path: str | Path, limits: TraceLimits | None = None) -> NotebookNode:
    """Read and check a trace; every way it can be unusable gets an error naming the fix.

    A trace may come from anywhere, so its size, counts and the numbers the readers use
    are checked against ``limits`` (see :class:`TraceLimits`) before anyone works on it.
    """
    path = Path(path)
    limits = limits or TraceLimits()
    try:
        raw = json.loads(read_trace_text(path, limits))
    except RecursionError as exc:
        raise TraceError(f"{path} is not a trace: its JSON is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{path} is not a notebook: invalid JSON at line {exc.lineno} column {exc.colno} "
            f"({exc.msg}). Was it truncated? Traces are written atomically, so a partial file "
            "is not one of ours."
        ) from exc
    if not isinstance(raw, dict) or "cells" not in raw or "nbformat" not in raw:
        raise TraceError(f"{path} is JSON but not a Jupyter notebook (no cells/nbformat keys)")
    try:
        nb: NotebookNode = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several unrelated types here
        raise TraceError(f"{path} is not a valid notebook: {_first_line(exc)}") from exc
    meta = nb.metadata.get("codeact")
    if not isinstance(meta, dict):
        raise TraceError(
            f"{path} is a notebook but not a codeact trace (no 'codeact' metadata). "
            "`codeact run` and %%agent write traces; plain notebooks can be run with nbclient."
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise TraceError(f"{path}: trace format version {version!r} is not understood")
    if version > TRACE_FORMAT_VERSION:
        raise TraceError(
            f"{path} was written by a newer codeact_kernel (trace format {version}; this one "
            f"reads up to {TRACE_FORMAT_VERSION}). Upgrade: pip install -U codeact-kernel"
        )
    check_trace(nb, path, limits)
    return nb


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
