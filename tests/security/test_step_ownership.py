"""Finding 5: tool calls belong to the step whose code made them.

Model code acts outside its step three ways: an IPython hook (``post_run_cell``) runs
after later steps' cells; a background thread keeps calling tools after its step, and
after the run; a forged ``execute_reply`` + idle (signed with the kernel's own key) ends
the step early on the host while its code keeps running. Each made tool calls that the
trace attributed to later steps, or that no trace recorded at all.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ..scripted_llm import ScriptedLLMServer
from .forge import FORGE_PRELUDE
from .helpers import Bank, agent_cell, fence, make_agent, read_trace, step_cells, traced_calls

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


def test_hook_registered_by_a_step_is_removed_and_flagged(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank
) -> None:
    llm.enqueue(
        fence("def pay(*args):\n    transfer_money(100)\n"
              "get_ipython().events.register('post_run_cell', pay)\n"
              "get_ipython().events.register('post_execute', pay)"),
        fence("x = 1"),
        fence("final_answer(x)"),
    )
    agent = make_agent(llm, tmp_path, runtime, bank)
    result = agent.run("register a hook")
    assert result.status == "answered", result.reason
    nb = read_trace(result.trace_path)
    steps = step_cells(nb)
    # The hooks ran once, right after the cell that registered them, inside its step...
    assert [step for step, _ in traced_calls(nb, "transfer_money")] == [1, 1]
    assert bank.amounts == [100, 100]
    # ...and were removed at the step's end, which the trace says.
    flags = steps[0].metadata["codeact"]["flags"]
    assert any("post_run_cell" in f and "removed" in f for f in flags), flags
    assert any("post_execute" in f for f in flags), flags
    assert not steps[1].metadata["codeact"]["tool_calls"]


BACKGROUND = """
import threading, time
def pay_forever():
    while True:
        try:
            transfer_money(1)
        except Exception as exc:
            refusals.append(str(exc))
        time.sleep(0.05)
refusals = []
threading.Thread(target=pay_forever, daemon=True).start()
time.sleep(0.3)
final_answer('done')
"""


def test_background_thread_is_refused_once_the_run_ended(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank
) -> None:
    llm.enqueue(fence(BACKGROUND))
    with make_agent(llm, tmp_path, runtime, bank) as agent:
        result = agent.run("pay from a thread")
        assert result.status == "answered"
        ran_in_step = len(bank.amounts)
        ended = time.time()
        time.sleep(1.5)
        late = [t for t, _ in bank.transfers if t > ended]
        assert late == [], f"{len(late)} transfers ran after the run ended"
        nb = read_trace(result.trace_path)
        step = step_cells(nb)[0].metadata["codeact"]
        assert any("thread" in f for f in step["flags"]), step["flags"]
    # Every call that really ran is in the trace, in the step that was running...
    nb = read_trace(result.trace_path)
    assert len(traced_calls(nb, "transfer_money")) == ran_in_step == len(bank.amounts)
    # ...and the refused ones are in the run's metadata, with their times.
    refused = nb.metadata["codeact"]["runs"][0]["refused_tool_calls"]
    assert refused["count"] >= 10
    assert all(r["name"] == "transfer_money" and r["time"] > ended - 1
               for r in refused["calls"])


FORGED_END = FORGE_PRELUDE + """
import time
_reply = _k.session.pack({'status': 'ok', 'execution_count': 1, 'user_expressions': {},
                          'payload': []})
_send_raw('shell', 'execute_reply', _reply)
_send_raw('iopub', 'status', b'{"execution_state": "idle"}')
time.sleep(1.5)
transfer_money(42)
"""


def test_forged_end_of_step_does_not_move_calls_to_the_next_step(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank
) -> None:
    llm.enqueue(fence(FORGED_END), fence("final_answer('next')"))
    agent = make_agent(llm, tmp_path, runtime, bank)
    result = agent.run("forge the end of the step")
    nb = read_trace(result.trace_path)
    assert bank.amounts == [42]
    assert [step for step, _ in traced_calls(nb, "transfer_money")] == [1]
    assert result.status == "answered" and result.answer == "next"


def test_kept_open_magic_session_refuses_calls_between_cells(
    ip: Any, magic_llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    bank = Bank()
    ip.user_ns["transfer_money"] = bank.tool().fn
    ip.run_line_magic("config", "Policy.authorized_imports = ['*']")
    magic_llm.enqueue(fence(BACKGROUND))
    agent_cell(ip, "--new --tools transfer_money -o first", "pay from a thread")
    assert ip.user_ns["first"] == "done"
    ended = time.time()
    time.sleep(1.5)
    assert [t for t, _ in bank.transfers if t > ended] == []
    magics = ip.magics_manager.registry["AgentMagics"]
    trace_path = magics.current.trace.path
    magics.close()  # the kept-open session ends: what it refused is saved in its trace
    nb = read_trace(trace_path)
    assert len(traced_calls(nb, "transfer_money")) == len(bank.amounts)
    assert nb.metadata["codeact"]["runs"][0]["refused_tool_calls"]["count"] >= 10


FORKED = """
import os, time
if os.fork() == 0:
    while True:
        try:
            transfer_money(2)
        except Exception:
            pass
        time.sleep(0.05)
time.sleep(0.3)
final_answer('forked')
"""


def test_process_left_behind_is_counted_by_the_host_and_refused_after_the_run(
    llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, bank: Bank
) -> None:
    llm.enqueue(fence(FORKED))
    with make_agent(llm, tmp_path, runtime, bank) as agent:
        result = agent.run("fork a payer")
        assert result.status == "answered", result.reason
        ended = time.time()
        time.sleep(1.0)
        assert [t for t, _ in bank.transfers if t > ended] == []
        counted = agent.session.process_count() is not None
    nb = read_trace(result.trace_path)
    flags = step_cells(nb)[0].metadata["codeact"]["flags"]
    # Without a cgroup the host cannot count processes; the window holds regardless.
    assert any("counted by the host" in f for f in flags) == counted, flags
    assert len(traced_calls(nb, "transfer_money")) == len(bank.amounts)
    assert nb.metadata["codeact"]["runs"][0]["refused_tool_calls"]["count"] >= 5
