"""The trace notebook: valid, atomic, complete metadata."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_output

from codeact_kernel.agent.results import StepRecord
from codeact_kernel.trace.notebook import BLOCKED_TAG, SETUP_TAG, TraceWriter


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
