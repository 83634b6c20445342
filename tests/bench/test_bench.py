"""``codeact bench``: a small task file in all three formats against the scripted model
(real kernels, real traces), and task files that are wrong in each way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeact_kernel.bench.runner import CATEGORIES
from codeact_kernel.bench.tasks import load_tasks
from codeact_kernel.errors import BenchError
from codeact_kernel.terminal.cli import main

from ..helpers import fence, load_trace
from ..scripted_llm import ScriptedLLMServer, call, tool_calls

TASK_FILE = '''
from codeact_kernel.bench import BenchTask
from codeact_kernel.terminal.demo import get_population, search_cities

TASKS = [
    {"name": "paris", "prompt": "Population of Paris?", "tools": [get_population],
     "check": lambda a: a == 2_102_650, "difficulty": "easy", "required": [get_population]},
    BenchTask("french_total", "Total population of the French cities?",
              [search_cities, get_population], lambda a: a == 4_350_139, difficulty="hard"),
]
'''


def test_bench_runs_a_task_file_in_three_formats(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text(TASK_FILE)
    llm.enqueue(
        fence("final_answer(get_population('Paris'))"),                     # paris, code
        tool_calls(call("final_answer", {"value": 2_102_650})),            # paris, json
        tool_calls(call("get_population", {"city": "Paris"})),             # paris, auto
        tool_calls(call("final_answer", {"value": 2_102_650})),
        # total, code; its third reply is the last call at the step budget's end
        fence("print(search_cities('France'))"), fence("print(1)"), "Out of ideas.",
        "I would rather not.", "Still no.", "Nothing.",                    # total, json
        fence("final_answer(5)"),                                          # total, auto
    )
    out = tmp_path / "out"
    status = main(["bench", str(tasks), "--model", "openai/scripted", "--api-base",
                   llm.api_base, "--LLM.function_calling=yes", "--max-steps", "2",
                   "--LLM.max_retries=0", "--Agent.resample_repeats=0", "-o", str(out),
                   f"--KernelSession.runtime_dir={runtime_dir}"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = json.loads((out / "results.json").read_text())
    runs = {(r["task"], r["format"]): r for r in results["runs"]}
    assert {k: r["category"] for k, r in runs.items()} == {
        ("paris", "code"): "pass", ("paris", "json"): "wrong answer",
        ("paris", "auto"): "pass", ("french_total", "code"): "budget exhausted",
        ("french_total", "json"): "no answer", ("french_total", "auto"): "wrong answer"}
    assert "never called get_population" in runs["paris", "json"]["note"]
    summary = results["summary"]
    assert summary["code"]["success_rate"] == 0.5
    assert summary["code"]["by_difficulty"] == {"easy": 1.0, "hard": 0.0}
    assert summary["json"]["categories"] == {"pass": 0, "wrong answer": 1,
                                             "budget exhausted": 0, "no answer": 1, "error": 0}
    assert summary["auto"]["median_steps"] == 1.5
    assert all(r["tokens"] > 0 and r["seconds"] >= r["model_seconds"] > 0 and r["load"] >= 0
               for r in results["runs"])
    for row in results["runs"]:  # every run left a finished, valid trace
        nb = load_trace(row["trace"])
        assert nb.metadata["codeact"]["agent"]["action_format"] == row["format"]
        assert Path(row["trace"]).parent.name == row["format"]
    # The side-by-side table: one column per format, a row per measure and category.
    header = next(line for line in printed.splitlines() if line.split() == [
        "code", "json", "auto"])
    assert header
    assert any(line.split()[:3] == ["success", "rate", "50%"] for line in printed.splitlines())
    for category in CATEGORIES[1:]:
        assert category in printed


def test_json_formats_need_function_calling(tmp_path: Path, llm: ScriptedLLMServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text(TASK_FILE)
    status = main(["bench", str(tasks), "--model", "openai/scripted", "--api-base",
                   llm.api_base, "-o", str(tmp_path / "out")])
    assert status == 2
    assert "--LLM.function_calling=yes" in capsys.readouterr().err
    assert not llm.requests


@pytest.mark.parametrize(("text", "message"), [
    ("X = 1\n", "has no TASKS list"),
    ("TASKS = [{'prompt': 'p', 'tools': [], 'check': bool}]\n", "needs a 'name'"),
    ("TASKS = [{'name': 'a', 'tools': [], 'check': bool}]\n", "needs a 'prompt'"),
    ("TASKS = [{'name': 'a', 'prompt': 'p', 'tools': []}]\n", "needs a 'check'"),
    ("TASKS = [{'name': 'a', 'prompt': 'p', 'tools': [1], 'check': bool}]\n",
     "'tools' must be a list of functions"),
    ("def f(x):\n    return x\nTASKS = [{'name': 'a', 'prompt': 'p', 'tools': [f], "
     "'check': bool}]\n", "needs type annotations"),
    ("def f(x: int) -> int:\n    '''F.'''\n    return x\nTASKS = [{'name': 'a', 'prompt': "
     "'p', 'tools': [], 'check': bool, 'required': [f]}]\n", "'required' must list"),
    ("TASKS = [{'name': 'a', 'prompt': 'p', 'tools': [], 'check': bool}] * 2\n",
     "repeated: a"),
    ("raise ValueError('boom')\n", "failed: ValueError: boom"),
])
def test_bad_task_files_name_the_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tasks.py"
    path.write_text(text)
    with pytest.raises(BenchError, match=message):
        load_tasks(path)


def test_only_selects_tasks_and_names_unknown_ones(tmp_path: Path) -> None:
    path = tmp_path / "tasks.py"
    path.write_text(TASK_FILE)
    assert [t.name for t in load_tasks(path, ["paris"])] == ["paris"]
    with pytest.raises(BenchError, match="no task 'rome'; its tasks: paris, french_total"):
        load_tasks(path, ["rome"])
    assert load_tasks(path)[1].difficulty == "hard"
