"""The trace notebook: valid, atomic, complete metadata."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_output

from codeact_kernel.trace.notebook import BLOCKED_TAG, SETUP_TAG, TraceWriter
from codeact_kernel.trace.record import StepRecord


def test_trace_cells_metadata_and_validity(tmp_path: Path) -> None:
    path = tmp_path / "t.ipynb"
    writer = TraceWriter(path, {"model": "m", "tools": [{"name": "f", "signature": "f()"}]})
    writer.add_task("do it")
    writer.add_step(StepRecord(
        1, "I will import os.", "import os", policy={
            "allowed": False,
            "violations": [{"rule": "import", "message": "os is not allowed", "lineno": 1}],
        }, status="blocked",
    ))
    writer.add_step(StepRecord(
        2, "Now compute.", "print(1)", status="ok", execution_count=1, prompt_tokens=10,
        outputs=[new_output("stream", name="stdout", text="1\n")],
        tool_calls=[{"name": "f", "arguments": {}, "duration": 0.001}],
    ))
    # After every step the file on disk is already a valid notebook.
    nbformat.validate(nbformat.read(path, as_version=4))
    writer.finish("answered", {"x": 1}, {"steps": 2})
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    meta = nb.metadata["codeact"]
    assert meta["status"] == "answered" and meta["final_answer"] == {"x": 1}
    assert meta["format_version"] == 1 and meta["task"] == "do it"
    assert nb.metadata["kernelspec"]["name"] == "codeact-review"
    raw = [c for c in nb.cells if c.cell_type == "raw"]
    assert raw[0].metadata["tags"] == [BLOCKED_TAG] and raw[0].source == "import os"
    setup, *code = [c for c in nb.cells if c.cell_type == "code"]
    assert setup.metadata["tags"] == [SETUP_TAG] and "def f():" in setup.source
    assert code[0].execution_count == 1 and code[0].outputs[0]["text"] == "1\n"
    assert code[0].metadata["codeact"]["tool_calls"][0]["name"] == "f"
    assert "Blocked by policy" in "".join(c.source for c in nb.cells)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    json.loads(path.read_text())


def test_the_task_comes_first_and_the_replay_setup_is_collapsed(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "t.ipynb", {"model": "m", "tools": []})
    writer.add_task("first task")
    writer.add_step(StepRecord(1, "", None, status="no-code"))  # an empty reply, no code
    writer.add_step(StepRecord(2, "Go.", "x = 1", status="ok", execution_count=1))
    writer.add_task("second task")
    writer.finish("answered", 1, {"steps": 2})
    nb = nbformat.read(tmp_path / "t.ipynb", as_version=4)
    nbformat.validate(nb)
    kinds = [(c.cell_type, c.metadata.get("codeact", {}).get("role")) for c in nb.cells]
    assert kinds[:2] == [("markdown", "task"), ("code", "setup")]
    setup = nb.cells[1]
    assert setup.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    # Run All meets the setup before any step's code.
    first_step = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                      and "step" in c.metadata.get("codeact", {}))
    assert first_step > 1 and "_codeact_replay_call" in setup.source
    runs = nb.metadata["codeact"]["runs"]
    assert [nb.cells[r["first_cell"]].source for r in runs] == ["## Task\n\nfirst task",
                                                               "## Task\n\nsecond task"]
    # The empty reply is still a step of the record.
    empty = next(c for c in nb.cells if c.metadata.get("codeact", {}).get("step") == 1)
    assert empty.metadata["codeact"]["status"] == "no-code" and "empty reply" in empty.source
