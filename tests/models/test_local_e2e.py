"""End to end on the real embedded local model: the README's main command, for real.

Slow (tens of seconds per task on 2 cores) and run in CI, where the ``[local]`` extra is
installed; a missing extra fails these tests (tests/models/localmodel.py), it never skips them.
A small model's answer may be wrong, so only the most reliable task (the demo's total)
has its answer checked; every task must leave a valid trace and run code at least once.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from codeact_kernel import Agent, RunResult, tool
from codeact_kernel.terminal.demo import DEMO_TASK, demo_tools, get_population, search_cities

from .localmodel import require_local_model

pytestmark = [pytest.mark.localmodel, pytest.mark.timeout(900)]

FRANCE = [get_population(c) for c in search_cities("France")]


@pytest.fixture(scope="module", autouse=True)
def local_model() -> Path:
    return require_local_model()


def get_wind_speed(city: str) -> float:
    """Current wind speed in a city, in km/h.

    Args:
        city: The city's name, e.g. "Dublin".
    """
    return {"dublin": 31.0, "vienna": 12.5, "athens": 18.0}.get(city.strip().lower(), 0.0)


def run_local(task: str, tools: list[object], tmp_path: Path) -> RunResult:
    agent = Agent(model="local", tools=tools, max_steps=5,  # type: ignore[arg-type]
                  trace_path=str(tmp_path / "trace.ipynb"))
    agent.session.runtime_dir = str(tmp_path)
    result = agent.run(task)
    print(f"{result.status} in {len(result.steps)} steps, {result.duration:.1f} s: "
          f"{result.answer!r} {result.reason}")
    return result


def assert_trace_and_loop(result: RunResult) -> nbformat.NotebookNode:
    assert result.status != "error", result.reason
    nb = nbformat.read(result.trace_path, as_version=4)
    nbformat.validate(nb)
    executed = [s for s in result.steps if s.code and s.execution_count is not None]
    assert executed, [(s.status, s.model_text[:200]) for s in result.steps]
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code_cells) >= len(executed)
    assert nb.metadata["codeact"]["status"] == result.status
    return nb


def assert_demo_answer(answer: object) -> None:
    assert isinstance(answer, dict), answer
    assert answer["total"] == sum(FRANCE)
    # Either standard deviation is a right reading of the task.
    assert any(answer["std"] == pytest.approx(s, rel=1e-3)
               for s in (statistics.stdev(FRANCE), statistics.pstdev(FRANCE)))


def test_demo_task_through_the_python_api(tmp_path: Path) -> None:
    result = run_local(DEMO_TASK, demo_tools(), tmp_path)  # type: ignore[arg-type]
    nb = assert_trace_and_loop(result)
    assert result.status == "answered", result.reason
    assert_demo_answer(result.answer)
    assert nb.metadata["codeact"]["final_answer"]["total"] == sum(FRANCE)
    names = {c["name"] for s in result.steps for c in s.tool_calls}
    assert {"search_cities", "get_population", "final_answer"} <= names


def test_second_task_with_a_test_defined_tool(tmp_path: Path) -> None:
    result = run_local("Which of Dublin, Vienna and Athens is the windiest right now? "
                       "Answer with the city's name.", [tool(get_wind_speed)], tmp_path)
    assert_trace_and_loop(result)
    # The loop ran; whether a 1.5B model picked Dublin is the benchmark's business.


def test_readme_main_command(tmp_path: Path) -> None:
    codeact = Path(sys.executable).with_name("codeact")
    cli = [sys.executable, "-m", "codeact_kernel.terminal.cli"]
    argv = [str(codeact)] if codeact.exists() else cli
    trace = tmp_path / "traces" / "demo.ipynb"
    done = subprocess.run(
        [*argv, "run", "--demo", "--trace", str(trace), f"--KernelSession.runtime_dir={tmp_path}"],
        capture_output=True, text=True, timeout=840, cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "── step 1" in done.stdout  # steps are printed as they run
    assert "Final answer: {'total': 4350139" in done.stdout
    assert f"Trace: {trace}" in done.stdout
    nbformat.validate(nbformat.read(trace, as_version=4))
