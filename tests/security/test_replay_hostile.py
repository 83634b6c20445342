"""Hostile traces on the host: replay and the readers of a trace stay linear and bounded.

A trace is a file anyone can hand a reviewer, and its outputs came from the sandbox; the
host's work on it (normalising for the comparison, reading its metadata, following the
links to sub-agent traces) must finish quickly whatever it holds, and a trace that cannot
be used safely gets an error naming the fix instead of a hang or a crash.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from codeact_kernel.agent.replay import normalize, render_outputs
from codeact_kernel.errors import TraceError
from codeact_kernel.terminal.cli import main as cli_main
from codeact_kernel.trace.notebook import KERNELSPEC, TRACE_FORMAT_VERSION, load_trace
from codeact_kernel.trace.report import show

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20
# A linear pass over 1 MB takes well under a second; the quadratic normalisers took about
# 7 s for 64 KB and would take about half an hour for 1 MB. CPU time, so that other work
# on a shared machine does not count.
BOUND = 2.0


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.process_time()
    value = fn(*args)
    return value, time.process_time() - started


@pytest.mark.parametrize("text", [
    " " * MB + "x",                                  # trailing-space rule, no newline
    "\t " * (MB // 2) + "x\n",
    "/" * MB,                                        # session-path rule
    "/a" * (MB // 2) + "codeact-sessions-",
    ("/" + "codeact-sessions-1/s" * 8) * (MB // 160),
    "1" * MB + " x",                                 # timing rule
    "1.1" * (MB // 3),
    "0x" * (MB // 2),
    "In [" * (MB // 4),
    "id=" * (MB // 3),
], ids=["spaces", "tabs", "slashes", "path-run", "session-ish", "digits", "dotted",
        "hex", "in-prompt", "ids"])
def test_normalisation_is_linear_on_a_megabyte(text: str) -> None:
    _, elapsed = timed(normalize, text)
    assert elapsed < BOUND, f"normalize took {elapsed:.2f}s on {len(text)} chars"


def test_normalisation_still_removes_what_varies() -> None:
    path = "/tmp/codeact-sessions-0/s123-abc_d/work/f.txt"
    assert normalize(f"see {path} now") == "see <session>/work/f.txt now"
    assert normalize("a  \nb\t\n c ") == "a\nb\n c"
    assert normalize(f"x {path}   \ny") == "x <session>/work/f.txt\ny"
    assert normalize("took 12 ms at 0x7f00aa11") == "took <time> at 0x<addr>"


def test_rendering_a_megabyte_output_is_linear() -> None:
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=" " * MB + "x"),
               nbformat.v4.new_output("display_data", data={"text/plain": "/" * MB})]
    _, elapsed = timed(render_outputs, outputs)
    assert elapsed < BOUND


# ---- hostile trace files -------------------------------------------------------------------


def trace(tmp_path: Path, name: str = "t.ipynb", **agent: Any) -> Path:
    """A small valid trace, as TraceWriter lays it out, with one executed step."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["codeact"] = {
        "format_version": TRACE_FORMAT_VERSION, "task": "t", "status": "answered",
        "final_answer": 1, "runs": [], "agent": {"step_timeout": 5.0, **agent},
        "totals": {"steps": 1, "prompt_tokens": 1, "completion_tokens": 1, "duration": 0.1},
    }
    cell = nbformat.v4.new_code_cell("print('hi')")
    cell.metadata["codeact"] = {"step": 1, "status": "ok", "tool_calls": []}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nb.cells.append(cell)
    path = tmp_path / name
    # json.dumps writes NaN and Infinity, as a hostile or corrupted trace may hold them.
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0, 1e12, "60", None, [1]],
                         ids=["nan", "inf", "negative", "zero", "huge", "string", "null",
                              "list"])
def test_step_timeout_must_be_finite_and_capped(tmp_path: Path, value: Any) -> None:
    path = trace(tmp_path, step_timeout=value)
    with pytest.raises(TraceError, match=r"step_timeout.*(seconds|number)") as info:
        load_trace(path)
    assert "metadata" in str(info.value)  # where to fix it


def test_replay_of_a_nan_timeout_ends_with_a_clear_error(tmp_path: Path) -> None:
    """Before the check, the NaN reached the execute wait, whose deadline then never came:
    a cell that loops was never interrupted and replay never returned."""
    path = trace(tmp_path, step_timeout=math.nan)
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] = "while True:\n    pass"
    path.write_text(json.dumps(nb))
    env_python = [sys.executable, "-m", "codeact_kernel.terminal.cli", "replay", str(path),
                  f"--KernelSession.runtime_dir={tmp_path}"]
    done = subprocess.run(env_python, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "step_timeout" in done.stderr


def test_deeply_nested_json_is_a_trace_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.ipynb"
    path.write_text('{"cells": [], "nbformat": 4, "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(TraceError, match="nest"):
        load_trace(path)


def test_oversized_trace_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from codeact_kernel.trace.validate import TraceLimits

    path = trace(tmp_path)
    limits = TraceLimits(max_file_bytes=100)
    with pytest.raises(TraceError, match=r"TraceLimits\.max_file_bytes"):
        load_trace(path, limits=limits)


def test_counts_are_bounded(tmp_path: Path) -> None:
    from codeact_kernel.trace.validate import TraceLimits

    path = trace(tmp_path)
    nb = json.loads(path.read_text())
    nb["cells"] = nb["cells"] * 50
    path.write_text(json.dumps(nb))
    with pytest.raises(TraceError, match=r"TraceLimits\.max_cells"):
        load_trace(path, limits=TraceLimits(max_cells=10))
    nb["cells"] = nb["cells"][:1]
    nb["cells"][0]["metadata"]["codeact"]["tool_calls"] = [
        {"name": "f", "arguments": {}, "duration": 0.1}] * 50
    path.write_text(json.dumps(nb))
    with pytest.raises(TraceError, match=r"TraceLimits\.max_tool_calls"):
        load_trace(path, limits=TraceLimits(max_tool_calls=10))


@pytest.mark.parametrize("field,value", [
    ("duration", "soon"), ("llm_duration", math.nan), ("prompt_tokens", "many"),
    ("cost", [1]),
])
def test_numeric_metadata_has_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      field: str, value: Any) -> None:
    """`codeact show` formats these as numbers; a string there crashed it with a traceback."""
    path = trace(tmp_path)
    nb = json.loads(path.read_text())
    cell_meta = nb["cells"][0]["metadata"]["codeact"]
    if field == "duration":
        cell_meta["tool_calls"] = [{"name": "f", "arguments": {}, "duration": value}]
    else:
        cell_meta[field] = value
    path.write_text(json.dumps(nb))
    assert cli_main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert field in err and "number" in err


def test_a_trace_linking_itself_as_its_sub_agent_does_not_recurse(tmp_path: Path) -> None:
    path = trace(tmp_path, name="loop.ipynb")
    nb = json.loads(path.read_text())
    nb["cells"][0]["metadata"]["codeact"]["tool_calls"] = [
        {"name": "helper", "arguments": {}, "duration": 0.1, "trace": "loop.ipynb"}]
    path.write_text(json.dumps(nb))
    text, elapsed = timed(show, path)
    assert elapsed < BOUND
    assert text.count("sub-agent trace") <= 2
    assert "already shown" in text


def test_sub_agent_links_stay_inside_the_trace_folder(tmp_path: Path) -> None:
    outside = trace(tmp_path, name="outside.ipynb")
    inner = tmp_path / "inner"
    inner.mkdir()
    path = trace(inner, name="main.ipynb")
    nb = json.loads(path.read_text())
    nb["cells"][0]["metadata"]["codeact"]["tool_calls"] = [
        {"name": "helper", "arguments": {}, "duration": 0.1, "trace": f"../{outside.name}"},
        {"name": "helper", "arguments": {}, "duration": 0.1, "trace": str(outside)}]
    path.write_text(json.dumps(nb))
    text = show(path)
    assert "Task:   t" in text.splitlines()[0]
    assert text.count("sub-agent trace outside.ipynb") == 0
    assert text.count("not followed") == 2
