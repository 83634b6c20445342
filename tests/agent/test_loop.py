"""End-to-end agent runs: scripted replies through litellm, real sandboxed kernels."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from codeact_kernel import Agent, ModelError, tool
from codeact_kernel.terminal import demo
from codeact_kernel.trace.notebook import BLOCKED_TAG

from ..helpers import code_cells, fence, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer


def test_seed_example_with_host_tools(llm: ScriptedLLMServer, tmp_path: Path,
                                      runtime_dir: Path) -> None:
    llm.enqueue(fence(
        "import statistics\n"
        "pops = [get_population(c) for c in search_cities('France')]\n"
        "total = sum(pops)\nstd = statistics.pstdev(pops)\nprint(total, round(std))\n"
        "final_answer({'total': total, 'std': std})"
    ))
    result = make_agent(llm, tmp_path, runtime_dir).run(
        "Total and standard deviation of French city populations"
    )
    assert result.status == "answered", result.reason
    assert result.answer["total"] == 4_350_139
    expected = [demo.get_population(c) for c in demo.search_cities("France")]
    assert result.answer["std"] == pytest.approx(statistics.pstdev(expected))
    nb = load_trace(result.trace_path)
    meta = nb.metadata["codeact"]
    assert meta["status"] == "answered"
    assert meta["final_answer"]["total"] == 4_350_139
    assert {t["name"] for t in meta["tools"]} == {"search_cities", "get_population"}
    cell = code_cells(nb)[0]
    calls = cell.metadata["codeact"]["tool_calls"]
    assert [c["name"] for c in calls][:2] == ["search_cities", "get_population"]
    assert len(calls) == 7  # one search, five populations, one final_answer
    assert cell.metadata["codeact"]["prompt_tokens"] == 100
    assert "4350139" in cell.outputs[0]["text"]
    # The system prompt documented the tools with their signatures.
    system = llm.requests[0]["messages"][0]["content"]
    assert "def get_population(city: str) -> int" in system


def test_state_reused_and_error_fixed_from_traceback(llm: ScriptedLLMServer, tmp_path: Path,
                                                     runtime_dir: Path) -> None:
    llm.enqueue(
        fence("data = [3, 1, 2]\nresult = sorted(data)[5]"),
        fence("result = sorted(data)\nfinal_answer(result)", "Index was wrong; data persists."),
    )
    result = make_agent(llm, tmp_path, runtime_dir).run("Sort the data")
    assert result.status == "answered"
    assert result.answer == [1, 2, 3]
    second_prompt = llm.requests[1]["messages"]
    observation = second_prompt[-1]["content"]
    assert "IndexError" in observation and "Traceback" in observation
    assert "\x1b[" not in observation  # ANSI stripped
    assert "data: list" in observation  # variables summary
    nb = load_trace(result.trace_path)
    assert code_cells(nb)[0].outputs[0]["output_type"] == "error"
    assert [c.execution_count for c in code_cells(nb)] == [1, 2]


def test_resent_failing_code_gets_a_change_it_note(llm: ScriptedLLMServer, tmp_path: Path,
                                                  runtime_dir: Path) -> None:
    failing = "rows = [1.5, 2.5]\nfinal_answer(sum(r['mm'] for r in rows))"
    llm.enqueue(fence(failing), fence(failing.replace("\n", "   \n\n")),
                fence("final_answer(sum(rows))"))
    # With break_cycles the repeat is pruned to a summary, and with resample_repeats it is
    # sampled again before it runs (tests/agent/test_recovery).
    result = make_agent(llm, tmp_path, runtime_dir, break_cycles=False,
                        resample_repeats=0).run("Total rain")
    assert result.status == "answered" and result.answer == 4.0
    first, second = (llm.requests[i]["messages"][-1]["content"] for i in (1, 2))
    assert "TypeError" in first and "same code" not in first
    assert first.endswith("a ```python block that fixes the error.")  # asks for code next
    # Whitespace does not make it different code.
    assert "TypeError" in second and "This is the same code as step 1" in second


def test_blocked_import_is_reported_and_recovered(llm: ScriptedLLMServer, tmp_path: Path,
                                                  runtime_dir: Path) -> None:
    llm.enqueue(
        fence("import subprocess\nprint(subprocess.run(['id']))"),
        fence("import math\nfinal_answer(math.factorial(5))"),
    )
    result = make_agent(llm, tmp_path, runtime_dir).run("Compute 5!")
    assert result.status == "answered" and result.answer == 120
    assert result.steps[0].status == "blocked"
    observation = llm.requests[1]["messages"][-1]["content"]
    assert "NOT run" in observation and "subprocess" in observation
    nb = load_trace(result.trace_path)
    blocked = [c for c in nb.cells if BLOCKED_TAG in c.metadata.get("tags", [])]
    assert len(blocked) == 1 and blocked[0].cell_type == "raw"
    assert blocked[0].metadata["codeact"]["policy"]["allowed"] is False


def test_tool_redefinition_is_rejected(llm: ScriptedLLMServer, tmp_path: Path,
                                       runtime_dir: Path) -> None:
    llm.enqueue(
        fence("def get_population(city):\n    return 1000\n"
              "final_answer(get_population('Paris'))"),
        fence("final_answer(get_population('Paris'))"),
    )
    # Stub repair would run it without the def (tests/agent/test_recovery); off, it is refused.
    result = make_agent(llm, tmp_path, runtime_dir, repair_stubs=False).run(
        "Population of Paris")
    assert result.answer == 2_102_650
    assert result.steps[0].status == "blocked"
    assert "get_population" in llm.requests[1]["messages"][-1]["content"]


def test_huge_print_truncated_for_model_but_whole_in_trace(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path
) -> None:
    llm.enqueue(
        fence("for i in range(20000):\n    print(f'line {i:05d}')"),
        fence("final_answer(len(_outputs[1].splitlines()))"),
    )
    agent = make_agent(llm, tmp_path, runtime_dir, max_output_chars=2000)
    result = agent.run("Print a lot")
    observation = llm.requests[1]["messages"][-1]["content"]
    assert len(observation) < 4000
    assert "line 00000" in observation and "line 19999" in observation
    assert "characters omitted" in observation and "_outputs[1]" in observation
    assert result.answer == 20000  # the kernel could page through the full text
    nb = load_trace(result.trace_path)
    text = code_cells(nb)[0].outputs[0]["text"]
    assert text.count("\n") == 20000
    assert code_cells(nb)[0].metadata["codeact"]["observation_truncated"] is True


def test_image_output_reaches_trace_and_model_note(llm: ScriptedLLMServer, tmp_path: Path,
                                                   runtime_dir: Path) -> None:
    llm.enqueue(
        fence("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()"),
        fence("final_answer('plotted')"),
    )
    result = make_agent(llm, tmp_path, runtime_dir).run("Plot something")
    nb = load_trace(result.trace_path)
    outputs = code_cells(nb)[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert "image (image/png) was displayed" in llm.requests[1]["messages"][-1]["content"]


def test_step_budget_ends_with_clear_result(llm: ScriptedLLMServer, tmp_path: Path,
                                            runtime_dir: Path) -> None:
    llm.enqueue(fence("x = 1"), "I am thinking about it, no code yet.", fence("x += 1"))
    result = make_agent(llm, tmp_path, runtime_dir, max_steps=3,
                        resample_repeats=0).run("Never finish")
    assert result.status == "max_steps"
    assert "step budget exhausted" in result.reason
    assert [s.status for s in result.steps] == ["ok", "no-code", "ok"]
    assert "no code block" in llm.requests[2]["messages"][-1]["content"]
    nb = load_trace(result.trace_path)
    assert nb.metadata["codeact"]["status"] == "max_steps"


def test_final_answer_dataframe(llm: ScriptedLLMServer, tmp_path: Path,
                                runtime_dir: Path) -> None:
    import pandas as pd
    llm.enqueue(fence(
        "import pandas as pd\ndf = pd.DataFrame({'city': ['a', 'b'], 'n': [1, 2]})\n"
        "final_answer(df)"
    ))
    result = make_agent(llm, tmp_path, runtime_dir).run("A table")
    assert isinstance(result.answer, pd.DataFrame)
    assert result.answer["n"].tolist() == [1, 2]
    meta = load_trace(result.trace_path).metadata["codeact"]["final_answer"]
    assert json.dumps(meta)  # the trace keeps a JSON description, never a pickle


def test_secret_stays_on_host(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEACT_TEST_SECRET", "s3cr3t-value")

    @tool
    def secret_length() -> int:
        """Length of the host secret."""
        import os

        return len(os.environ["CODEACT_TEST_SECRET"])

    llm.enqueue(fence(
        "import os\nfinal_answer({'len': secret_length(), "
        "'inside': os.environ.get('CODEACT_TEST_SECRET')})"
    ))
    agent = make_agent(llm, tmp_path, runtime_dir, tools=[secret_length])
    agent.policy.authorized_imports = ["os"]
    result = agent.run("secret?")
    assert result.answer == {"len": 12, "inside": None}


def test_unknown_model_fails_before_any_code(tmp_path: Path, runtime_dir: Path) -> None:
    agent = Agent(model="no-such-provider-model", trace_path=str(tmp_path / "t.ipynb"))
    agent.session.runtime_dir = str(runtime_dir)
    with pytest.raises(ModelError, match="provider"):
        agent.run("anything")
    assert not list(runtime_dir.iterdir())  # no kernel was left behind


def test_transient_errors_are_retried_and_fatal_ones_explained(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path
) -> None:
    llm.fail_next.extend([503])
    llm.enqueue(fence("final_answer(1)"))
    agent = make_agent(llm, tmp_path, runtime_dir)
    assert agent.run("retry once").answer == 1
    llm.fail_next.extend([401])
    agent = make_agent(llm, tmp_path, runtime_dir)
    result = agent.run("bad key")
    assert result.status == "error" and "API key" in result.reason
    assert load_trace(result.trace_path).metadata["codeact"]["status"] == "error"


def test_streaming_tokens_reach_callback(llm: ScriptedLLMServer, tmp_path: Path,
                                         runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer(7)"))
    events: list[Any] = []
    result = make_agent(llm, tmp_path, runtime_dir).run("seven", on_event=events.append)
    tokens = "".join(e.data for e in events if e.kind == "token")
    assert "final_answer(7)" in tokens
    assert result.answer == 7
    assert [e.kind for e in events][-1] == "final"
