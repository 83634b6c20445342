"""Replay and audit of traces: hermetic replay, diffs, Run All, show, export, bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from codeact_kernel.agent.replay import Replayer, normalize, render_outputs
from codeact_kernel.errors import TraceError
from codeact_kernel.sandbox.kernelspec import REVIEW_KERNEL_NAME, install_kernelspec
from codeact_kernel.terminal.cli import main as cli_main
from codeact_kernel.trace.notebook import SETUP_TAG, load_trace
from codeact_kernel.trace.report import annotated_copy, export_html, show

from ..helpers import fence, make_agent
from ..scripted_llm import ScriptedLLMServer

REPLIES = [
    fence("cities = search_cities('France')\nprint(cities)\nprint(object())"),
    fence("import subprocess"),
    "I have all the cities; next I will look up their populations.",  # a reply with no code
    fence("pops = {c: get_population(c) for c in cities}\nmissing = pops['Atlantis']"),
    fence("import matplotlib.pyplot as plt\nplt.bar(list(pops), list(pops.values()))\n"
          "plt.show()\ntotal = sum(pops.values())\ntotal"),
    fence("final_answer({'total': total})"),
]


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("replay")
    runtime = tmp / "runtime"
    runtime.mkdir()
    with ScriptedLLMServer(list(REPLIES)) as llm:
        # The no-code reply stays a step of its own (not sampled again): the trace shows one.
        result = make_agent(llm, tmp, runtime, resample_repeats=0).run(
            "Total population of French cities")
    assert result.status == "answered"
    return Path(result.trace_path)


def replayer(tmp_path: Path) -> Replayer:
    r = Replayer()
    r.session.runtime_dir = str(tmp_path / "rt")
    return r


def test_run_replays_all_same(trace_path: Path, tmp_path: Path) -> None:
    report = replayer(tmp_path).replay(trace_path)
    verdicts = [c.verdict for c in report.cells]
    assert verdicts == ["same", "blocked", "error-reproduced", "same", "same"], report.cells
    assert report.all_same


def test_cells_that_page_through_cut_output_replay_the_same(tmp_path: Path) -> None:
    replies = [fence("for i in range(3000):\n    print(f'row {i:04d}')"),
               fence("print(_outputs[1].splitlines()[-1])"), fence("final_answer('done')")]
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    with ScriptedLLMServer(replies) as llm:
        result = make_agent(llm, tmp_path, runtime, max_output_chars=1000).run("Rows")
    assert result.steps[1].outputs[0]["text"].strip() == "row 2999", result.steps[1].reason
    assert result.steps[0].outputs_key == 1
    report = replayer(tmp_path).replay(result.trace_path)
    assert [c.verdict for c in report.cells] == ["same", "same", "same"], report.cells


def test_code_relying_on_the_preimported_modules_replays_the_same(tmp_path: Path) -> None:
    replies = [fence("print(np.arange(3).sum(), pd.Series([1, 2]).mean(), math.pi > 3)"),
               fence("final_answer(int(np.prod([2, 3])))")]
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    with ScriptedLLMServer(replies) as llm:
        result = make_agent(llm, tmp_path, runtime).run("Numbers")
    assert result.answer == 6 and result.steps[0].status == "ok", result.steps[0].reason
    report = replayer(tmp_path).replay(result.trace_path)
    assert [c.verdict for c in report.cells] == ["same", "same"], report.cells


def test_edited_output_is_reported_at_the_right_cell(trace_path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(trace_path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "step" in c.metadata["codeact"]]
    cells[0].outputs[0]["text"] = cells[0].outputs[0]["text"].replace("Lyon", "Lyons")
    edited = tmp_path / "edited.ipynb"
    nbformat.write(nb, edited)
    report = replayer(tmp_path).replay(edited)
    differing = [c for c in report.cells if c.verdict == "differs"]
    assert len(differing) == 1 and differing[0].cell == nb.cells.index(cells[0])
    assert "-" in differing[0].diff and "Lyons" in differing[0].diff
    assert not report.all_same
    code = cli_main(["replay", str(edited), "--report", str(tmp_path / "r.json")])
    assert code == 1
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["all_same"] is False and saved["counts"]["differs"] == 1


def test_replay_calls_no_model_and_no_network(trace_path: Path, tmp_path: Path) -> None:
    with ScriptedLLMServer() as llm:
        env = dict(os.environ, OPENAI_API_BASE=llm.api_base, OPENAI_API_KEY="sk-not-used")
        script = (
            "import sys\nfrom codeact_kernel.agent.replay import Replayer\n"
            f"r = Replayer(); r.session.runtime_dir = {str(tmp_path / 'rt')!r}\n"
            f"report = r.replay({str(trace_path)!r})\n"
            "print('litellm' in sys.modules, report.all_same)\n"
        )
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    assert llm.requests == []


def test_normalization_ignores_addresses_timings_and_ids() -> None:
    a = normalize("<object at 0x7f3a9c2d1e50> took 0.123 s, id=123, Cell In[4], line 2")
    b = normalize("<object at 0x7f11aa00bb10> took 12 ms, id=99, Cell In[17], line 2")
    assert a == b
    assert normalize("total 5") != normalize("total 6")


@pytest.fixture(scope="module")
def sandbox_kernelspec() -> Iterator[None]:
    runtime = Path(tempfile.mkdtemp(prefix="ckr-"))
    prefix = Path(tempfile.mkdtemp(prefix="ckr-prefix-"))
    install_kernelspec(prefix=str(prefix), launcher_args=[f"--runtime-dir={runtime}"],
                       review=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        yield
    subprocess.run(["rm", "-rf", str(runtime), str(prefix)], check=False)


def test_run_all_with_nbclient_reproduces_outputs(trace_path: Path,
                                                  sandbox_kernelspec: None) -> None:
    recorded = nbformat.read(trace_path, as_version=4)
    nb = nbformat.read(trace_path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == REVIEW_KERNEL_NAME
    NotebookClient(nb, timeout=120, allow_errors=True).execute()
    pairs = [(old, new) for old, new in zip(recorded.cells, nb.cells, strict=True)
             if new.cell_type == "code" and SETUP_TAG not in new.metadata.get("tags", [])]
    assert len(pairs) == 4
    for old, new in pairs:
        assert render_outputs(new.outputs) == render_outputs(old.outputs)


def test_show_and_export(trace_path: Path, tmp_path: Path) -> None:
    text = show(trace_path)
    assert "Task:   Total population of French cities" in text
    assert "BLOCKED" in text and "policy [import]" in text
    assert "tool search_cities(country='France')" in text
    assert "Final answer:" in text and "tokens" in text
    steps = [line.split(":")[0].strip() for line in text.splitlines()
             if line.startswith("  step ")]
    assert steps == [f"step {n}" for n in range(1, 7)]  # the reply without code is step 3
    assert "step 3: no-code" in text
    html = export_html(trace_path, tmp_path / "out.html").read_text()
    # The replay setup is at the end of the export, after the answer, not before the task.
    assert html.index("Total population of French cities") < html.index("Result: answered") \
        < html.index("Replay setup") < html.index("_codeact_replay_call")
    assert "data:image/png;base64" in html  # the plot
    assert "blocked code (not run)" in html and "subprocess" in html
    assert "tool call:" in html and "get_population" in html and "tokens 100 prompt" in html
    annotated = annotated_copy(load_trace(trace_path))
    nbformat.validate(annotated)


def test_bad_files_get_clear_errors(tmp_path: Path, trace_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.ipynb"
    garbage.write_text('{"cells": [')
    with pytest.raises(TraceError, match="invalid JSON at line 1"):
        load_trace(garbage)
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), plain)
    with pytest.raises(TraceError, match="not a codeact trace"):
        load_trace(plain)
    future = nbformat.read(trace_path, as_version=4)
    future.metadata["codeact"]["format_version"] = 99
    newer = tmp_path / "newer.ipynb"
    nbformat.write(future, newer)
    with pytest.raises(TraceError, match="pip install -U codeact-kernel"):
        load_trace(newer)
    binary = tmp_path / "binary.ipynb"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TraceError, match="not a"):
        load_trace(binary)
    assert cli_main(["show", str(garbage)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert cli_main(["replay", str(tmp_path / "missing.ipynb")]) == 2
