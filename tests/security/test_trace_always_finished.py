"""Finding 4: the run always ends with a finished trace that holds every tool call.

After a host tool call with side effects, model code makes the host fail: a malformed
(but correctly signed) message on iopub, a shadowed variables probe, a ``__repr__`` that
crashes the probe's decoding. Each used to end the run with an unhandled exception: the
trace kept no record of the step or its tool call, and its status stayed ``running``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codeact_kernel import Agent

from ..scripted_llm import ScriptedLLMServer
from .forge import FORGE_PRELUDE, MALFORMED
from .helpers import Bank, fence, make_agent, read_trace, step_cells, traced_calls

pytestmark = pytest.mark.timeout(240)


def run_attack(agent: Agent, task: str) -> tuple[Any, BaseException | None]:
    try:
        return agent.run(task), None
    except Exception as exc:  # the defect under test: recorded, then asserted on
        return None, exc


def assert_finished_with_the_call(agent: Agent, bank: Bank, crashed: BaseException | None,
                                  amount: int) -> Any:
    nb = read_trace(agent.trace_path)
    meta = nb.metadata["codeact"]
    assert crashed is None, f"the run crashed ({crashed!r}); trace status {meta['status']!r}"
    assert meta["status"] != "running" and "finished" in meta
    assert bank.amounts == [amount]  # it really ran on the host...
    calls = traced_calls(nb, "transfer_money")
    assert [c["arguments"] for _, c in calls] == [{"amount": amount}]  # ...and is in the trace
    return nb


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.mark.parametrize("name,forge", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_iopub_message_after_a_tool_call(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank, name: str, forge: str
) -> None:
    llm.enqueue(
        fence(f"transfer_money(5)\n{FORGE_PRELUDE}\n{forge}\nprint('still here')"),
        fence("final_answer('done')"),
    )
    agent = make_agent(llm, tmp_path, runtime, bank)
    result, crashed = run_attack(agent, "pay, then send a malformed message")
    nb = assert_finished_with_the_call(agent, bank, crashed, 5)
    assert result.status == "answered", result.reason
    first = step_cells(nb)[0].metadata["codeact"]
    assert any("malformed" in flag for flag in first["flags"]), first["flags"]
    assert "still here" in "".join(o.get("text", "") for o in step_cells(nb)[0].outputs)


PROBE_ATTACKS = [
    ("probe returns a number", "_codeact_vars = lambda *a, **k: '5'"),
    ("probe returns a deep repr",
     "class Deep:\n    def __repr__(self):\n        return '-' * 300000 + '1'\n"
     "_codeact_vars = lambda *a, **k: Deep()"),
    ("probe raises", "def _codeact_vars(*a, **k):\n    raise SystemExit('no')"),
]


@pytest.mark.parametrize("name,code", PROBE_ATTACKS, ids=[p[0] for p in PROBE_ATTACKS])
def test_shadowed_variables_probe_after_a_tool_call(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank, name: str, code: str
) -> None:
    llm.enqueue(fence(f"transfer_money(7)\n{code}\nrows = [1, 2]"),
                fence("final_answer(len(rows))"))
    agent = make_agent(llm, tmp_path, runtime, bank)
    result, crashed = run_attack(agent, "pay, then shadow the probe")
    assert_finished_with_the_call(agent, bank, crashed, 7)
    assert result.status == "answered" and result.answer == 2
    # The model still got the real variables: the host does not rely on the user's name.
    second_prompt = llm.requests[1]["messages"][-1]["content"]
    assert "- rows: list" in second_prompt


def test_tampered_private_probe_is_flagged_not_fatal(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank
) -> None:
    from codeact_kernel.kernel_side import PROBE_MODULE

    code = ("import sys\n"
            "class Deep:\n    def __repr__(self):\n        return '[' * 300000\n"
            f"sys.modules[{PROBE_MODULE!r}].variables = lambda *a, **k: Deep()\n"
            "transfer_money(9)")
    llm.enqueue(fence(code), fence("final_answer(1)"))
    agent = make_agent(llm, tmp_path, runtime, bank)
    result, crashed = run_attack(agent, "tamper with the probe")
    nb = assert_finished_with_the_call(agent, bank, crashed, 9)
    assert result.status == "answered"
    flags = step_cells(nb)[0].metadata["codeact"]["flags"]
    assert any("variables probe" in flag for flag in flags), flags


def test_unexpected_failure_still_finishes_the_trace(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank
) -> None:
    # The model's server fails mid-run (after a tool call that ran): the trace keeps the
    # step and its call, and the run ends with status error and the reason.
    llm.enqueue(fence("transfer_money(3)"))  # then the scripted server runs dry: HTTP 500
    agent = make_agent(llm, tmp_path, runtime, bank)
    result, crashed = run_attack(agent, "pay, then lose the model")
    nb = assert_finished_with_the_call(agent, bank, crashed, 3)
    assert result.status == "error" and result.reason
    assert nb.metadata["codeact"]["status"] == "error"
    assert nb.metadata["codeact"]["totals"]["reason"] == result.reason
