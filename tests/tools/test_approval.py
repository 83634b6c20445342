"""Approval gates: a tool call waits inside the running cell until a human decides.

Through the CLI (a real terminal on a pty, and headless with each --approve value),
through %%agent in IPython's testing shell (an MCP tool annotated destructive), and
through the Python API; real kernels, real tools, a scripted model.
"""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeact_kernel.agent.replay import Replayer
from codeact_kernel.kernels.stdin import APPROVAL_PROMPT_MARK
from codeact_kernel.terminal.cli import main
from codeact_kernel.tools.approval import parse_answer

from ..helpers import code_cells, fence, ipython_shell, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer
from . import approval_tools
from .mcp_servers import stdio_entry

ROOT = Path(__file__).parents[2]
TOOLS = ["tests.tools.approval_tools:delete_record", "tests.tools.approval_tools:count_records"]
DELETE_A = fence(
    "try:\n"
    "    print('LEFT', delete_record('a'))\n"
    "except ToolDenied as exc:\n"
    "    print('DENIED', exc)\n"
    "final_answer(count_records())"
)


@pytest.fixture(autouse=True)
def fresh_records() -> Iterator[None]:
    approval_tools.RECORDS.update({"a": 1, "b": 2, "c": 3})
    approval_tools.DELETED.clear()
    yield


def cli_args(llm: ScriptedLLMServer, trace: Path, runtime_dir: Path, *extra: str) -> list[str]:
    return ["run", "delete record a", "--model", "openai/scripted", "--api-base", llm.api_base,
            "--trace", str(trace), f"--KernelSession.runtime_dir={runtime_dir}", *extra,
            "--tools", *TOOLS]


@pytest.mark.parametrize(("flag", "answer", "decision", "why"), [
    ("ask", 3, "denied", "no one can answer in this run (no input); the default for such "
     "calls is 'deny'"),
    ("all", 2, "approved", "Agent.approval is 'allow'"),
    ("none", 3, "denied", "Agent.approval is 'deny'"),
])
def test_headless_cli_never_waits_and_uses_each_approve_value(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, flag: str, answer: int,
    decision: str, why: str, capsys: pytest.CaptureFixture[str],
) -> None:
    llm.enqueue(DELETE_A)
    trace = tmp_path / "t.ipynb"
    code = main(cli_args(llm, trace, runtime_dir, "--no-input", "--approve", flag))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"Final answer: {answer}" in out
    assert approval_tools.DELETED == (["a"] if decision == "approved" else [])
    [cell] = code_cells(load_trace(str(trace)))
    meta = cell.metadata["codeact"]
    [record] = meta["approvals"]
    assert record["tool"] == "delete_record" and record["arguments"] == {"key": "a"}
    assert record["decision"] == decision and record["by"] == "policy"
    assert why in record["reason"] and record["at"].startswith("20")
    call = meta["tool_calls"][0]
    if decision == "denied":
        assert "DENIED delete_record(key='a') needs" in cell.outputs[0]["text"]
        assert call["error"].startswith("ToolDenied: delete_record(key='a') needs")
    else:
        assert "LEFT 2" in cell.outputs[0]["text"] and call["error"] is None
    # `codeact show` lists the decision; replay reproduces it without the tools.
    assert main(["show", str(trace)]) == 0
    shown = capsys.readouterr().out
    assert f"approval delete_record(key='a') {decision} by policy at 20" in shown
    if flag == "none":
        report = Replayer(session=make_agent(llm, tmp_path, runtime_dir).session).replay(trace)
        assert report.all_same, [c.diff for c in report.cells]


def test_cli_asks_the_human_on_the_terminal(llm: ScriptedLLMServer, tmp_path: Path,
                                            runtime_dir: Path) -> None:
    llm.enqueue(DELETE_A)
    trace = tmp_path / "t.ipynb"
    master, slave = pty.openpty()
    os.write(master, b"yes\n")  # the human's answer, typed ahead on the terminal
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "codeact_kernel.terminal.cli",
         *cli_args(llm, trace, runtime_dir)],
        stdin=slave, capture_output=True, text=True, env=env, cwd=ROOT, timeout=240,
    )
    os.close(slave)
    os.close(master)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "approval needed (step 1)" in proc.stdout
    assert "The agent's code calls delete_record" in proc.stdout
    assert '"key": "a"' in proc.stdout and "print('LEFT', delete_record('a'))" in proc.stdout
    assert "LEFT 2" in proc.stdout and "Final answer: 2" in proc.stdout
    [record] = code_cells(load_trace(str(trace)))[0].metadata["codeact"]["approvals"]
    assert (record["decision"], record["by"]) == ("approved", "human")


def test_a_human_who_takes_longer_than_the_step_timeout_does_not_time_it_out(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
) -> None:
    llm.enqueue(DELETE_A)
    prompts: list[str] = []

    async def slow_human(prompt: str, password: bool) -> str:
        prompts.append(prompt)
        await asyncio.sleep(4)
        return "y"

    agent = make_agent(llm, tmp_path, runtime_dir,
                       tools=[approval_tools.delete_record, approval_tools.count_records],
                       step_timeout=2.0)
    result = agent.run("delete record a", stdin_handler=slow_human)
    assert result.status == "answered" and result.answer == 2, result.reason
    step = result.steps[0]
    assert step.status == "ok" and step.recovery == "none"
    assert step.approvals[0]["by"] == "human" and step.approvals[0]["waited"] >= 4
    assert len(prompts) == 1 and "delete_record" in prompts[0]


@pytest.fixture(scope="module")
def ip() -> Any:
    return ipython_shell()


def test_magic_approved_and_denied_mcp_calls(ip: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["y", "no, keep the ideas"])
    prompts: list[str] = []

    def human(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", human)
    with ScriptedLLMServer() as llm:
        ip.run_line_magic("config", "LLM.model = 'openai/scripted'")
        ip.run_line_magic("config", f"LLM.api_base = {llm.api_base!r}")
        ip.run_line_magic("config", f"Agent.trace_dir = {str(tmp_path)!r}")
        ip.run_line_magic("config", f"Agent.mcp_servers = [{stdio_entry()!r}]")
        llm.enqueue(fence(
            "print(files.delete_note(name='todo'))\n"
            "try:\n"
            "    files.delete_note(name='ideas')\n"
            "except ToolDenied as exc:\n"
            "    print('DENIED', exc)\n"
            "final_answer(files.list_notes())"
        ))
        try:
            ip.run_cell_magic("agent", "--new -o left", "delete todo, then ideas")
            path = ip.run_line_magic("agent_trace", "")
        finally:
            ip.run_line_magic("config", "Agent.mcp_servers = []")
            ip.magics_manager.registry["AgentMagics"].close()
    # The destructive tool asked; the read-only one (list_notes) did not.
    assert ip.user_ns["left"] == ["ideas"]
    assert len(prompts) == 2
    assert "calls files.delete_note" in prompts[0] and '"name": "todo"' in prompts[0]
    assert "files.delete_note(name='ideas')" in prompts[0]  # the step's code, in full
    [cell] = code_cells(load_trace(path))
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "deleted todo" in text
    assert "DENIED the human denied files.delete_note(name='ideas'): keep the ideas" in text
    decisions = [(d["decision"], d["by"], d["arguments"]["name"])
                 for d in cell.metadata["codeact"]["approvals"]]
    assert decisions == [("approved", "human", "todo"), ("denied", "human", "ideas")]


def test_answers_and_marks() -> None:
    assert parse_answer(" Yes ") == (True, "")
    assert parse_answer("no, not that file") == (False, "not that file")
    assert parse_answer("") == (False, "")
    rpc = (ROOT / "codeact_kernel" / "kernel_side" / "rpc.py").read_text()
    assert f"APPROVAL_PROMPT_MARK = {APPROVAL_PROMPT_MARK!r}".replace("'", '"') in rpc


def test_confirm_code_denies_then_runs_the_humans_edit(llm: ScriptedLLMServer, tmp_path: Path,
                                                       runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer(1)"), fence("final_answer(2)"))
    answers = iter(["no, not that", "e", "final_answer(40 + 2)", "."])
    prompts: list[str] = []

    async def human(prompt: str, password: bool) -> str:
        prompts.append(prompt)
        return next(answers)

    agent = make_agent(llm, tmp_path, runtime_dir, tools=[], confirm_code=True)
    result = agent.run("answer", stdin_handler=human)
    assert result.status == "answered" and result.answer == 42, result.reason
    denied, edited = result.steps
    assert "step 1: run this code?" in prompts[0] and "final_answer(1)" in prompts[0]
    assert denied.status == "blocked"
    assert [(d["decision"], d["by"], d["reason"]) for d in denied.approvals] == [
        ("denied", "human", "not that")]
    assert "NOT run, denied by the human: not that" in llm.requests[1]["messages"][-1]["content"]
    assert edited.code == "final_answer(40 + 2)"
    assert [d["decision"] for d in edited.approvals] == ["edited"]
    [cell] = code_cells(load_trace(result.trace_path))
    assert cell.source == "final_answer(40 + 2)"  # the trace holds the code that ran


def test_approval_over_the_stdin_back_channel_of_remote_kernels(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
) -> None:
    # Remote kernels reach tools through input requests; a held call and its approval
    # prompt travel that same channel, one after the other.
    llm.enqueue(fence(
        "print('LEFT', delete_record('a'))\n"
        "try:\n"
        "    delete_record('b')\n"
        "except ToolDenied as exc:\n"
        "    print('DENIED', exc)\n"
        "final_answer(count_records())"
    ))
    answers = iter(["y", "n"])

    async def human(prompt: str, password: bool) -> str:
        return next(answers)

    agent = make_agent(llm, tmp_path, runtime_dir,
                       tools=[approval_tools.delete_record, approval_tools.count_records])
    agent.session.tool_transport = "stdin"
    result = agent.run("delete a and b", stdin_handler=human)
    assert result.status == "answered" and result.answer == 2, result.reason
    text = result.steps[0].outputs[0]["text"]
    assert "LEFT 2" in text and "DENIED the human denied delete_record(key='b')" in text
    assert approval_tools.DELETED == ["a"]
    assert [d["decision"] for d in result.steps[0].approvals] == ["approved", "denied"]
