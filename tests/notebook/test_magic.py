"""%%agent through IPython's own testing shell, against real sandboxed kernels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError

from ..helpers import ipython_shell
from ..scripted_llm import ScriptedLLMServer


def fence(code: str) -> str:
    return f"Doing it.\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def ip() -> Any:
    return ipython_shell()


@pytest.fixture
def llm(ip: Any, tmp_path: Path) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        ip.run_line_magic("config", "LLM.model = 'openai/scripted'")
        ip.run_line_magic("config", f"LLM.api_base = {server.api_base!r}")
        ip.run_line_magic("config", f"Agent.trace_dir = {str(tmp_path)!r}")
        yield server
    magics = ip.magics_manager.registry["AgentMagics"]
    magics.close()


def agent_cell(ip: Any, line: str, task: str) -> None:
    ip.run_cell_magic("agent", line, task)


def test_options_out_variable_and_trace(ip: Any, llm: ScriptedLLMServer, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("x = 21\nprint('half is', x)\nfinal_answer(x * 2)"))
    agent_cell(ip, "--max-steps 2 -o answer", "double 21")
    assert ip.user_ns["answer"] == 42 and ip.user_ns["_agent"] == 42
    printed = capsys.readouterr().out
    assert "half is 21" in printed  # the step's output was shown live
    path = ip.run_line_magic("agent_trace", "")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["codeact"]["final_answer"] == 42
    copy = ip.run_line_magic("agent_trace", str(tmp_path / "copy.ipynb"))
    assert Path(copy).exists()


def test_session_persists_across_cells_and_reset_clears(ip: Any,
                                                        llm: ScriptedLLMServer) -> None:
    llm.enqueue(fence("kept = 5\nfinal_answer(kept)"), fence("final_answer(kept + 1)"))
    agent_cell(ip, "", "make kept")
    agent_cell(ip, "-o later", "now use it")
    assert ip.user_ns["later"] == 6
    # The second cell's prompt carried the conversation of the first.
    assert any("make kept" in str(m.get("content")) for m in llm.requests[1]["messages"])
    ip.run_line_magic("agent_reset", "")
    llm.enqueue(fence("final_answer('kept' in globals())"))
    agent_cell(ip, "-o exists", "is kept still there?")
    assert ip.user_ns["exists"] is False


def test_dataframe_round_trip_in_and_out(ip: Any, llm: ScriptedLLMServer) -> None:
    import pandas as pd
    ip.user_ns["sales"] = pd.DataFrame({"month": [1, 1, 2], "amount": [10.0, 5.0, 7.5]})
    llm.enqueue(fence("final_answer(sales.groupby('month', as_index=False)['amount'].sum())"))
    agent_cell(ip, "--in sales -o by_month --new", "total by month")
    assert isinstance(ip.user_ns["by_month"], pd.DataFrame)
    assert ip.user_ns["by_month"]["amount"].tolist() == [15.0, 7.5]
    system = llm.requests[0]["messages"][0]["content"]
    assert "sales: DataFrame" in system and "shape (3, 2)" in system


def test_notebook_functions_as_host_tools(ip: Any, llm: ScriptedLLMServer) -> None:
    ip.run_cell("calls = []\n"
                "def lookup(key: str) -> int:\n"
                "    '''Look a key up in the notebook.\n\n    Args:\n        key: The key.\n'''\n"
                "    calls.append(key)\n"
                "    return len(key)\n")
    llm.enqueue(fence("final_answer(lookup('abcd'))"))
    agent_cell(ip, "--tools lookup -o n", "use the tool")
    assert ip.user_ns["n"] == 4
    assert ip.user_ns["calls"] == ["abcd"]  # it ran in the user's own kernel


def test_input_is_answered_by_the_human(ip: Any, llm: ScriptedLLMServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []

    def human(prompt: str = "") -> str:
        prompts.append(prompt)
        return "Ada"

    monkeypatch.setattr("builtins.input", human)
    llm.enqueue(fence("name = input('Your name? ')\nfinal_answer('hello ' + name)"))
    agent_cell(ip, "-o greeting", "greet me")
    assert ip.user_ns["greeting"] == "hello Ada"
    assert prompts == ["Your name? "]


def test_code_option_inserts_next_cell(ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(fence("print('review me')"))
    ip.rl_next_input = None
    agent_cell(ip, "--code", "write code for me")
    # IPython's set_next_input stores the text for the frontend's next prompt.
    assert ip.rl_next_input == "print('review me')"


def test_line_magic_and_bad_option(ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(fence("final_answer(3)"))
    ip.run_line_magic("agent", "-o three add one and two")
    assert ip.user_ns["three"] == 3
    with pytest.raises(UsageError, match="Usage: %%agent"):
        ip.run_cell_magic("agent", "--no-such-option", "task")
    with pytest.raises(UsageError, match="no variable named nope"):
        ip.run_cell_magic("agent", "--in nope", "task")
    with pytest.raises(UsageError, match="not a function"):
        ip.run_cell_magic("agent", "--tools nothing_here", "task")


def test_sandbox_kernel_stops_when_the_user_kernel_exits(tmp_path: Path) -> None:
    import subprocess
    import sys

    runtime = tmp_path / "rt"
    runtime.mkdir()
    with ScriptedLLMServer([fence("kept = 1\nfinal_answer(kept)")]) as llm:
        script = (
            "import os\n"
            "from IPython.testing.globalipapp import start_ipython\n"
            "ip = start_ipython()\n"
            "ip.run_line_magic('load_ext', 'codeact_kernel')\n"
            f"ip.run_line_magic('config', \"KernelSession.runtime_dir = {str(runtime)!r}\")\n"
            f"ip.run_line_magic('config', \"Agent.trace_dir = {str(tmp_path)!r}\")\n"
            f"ip.run_cell_magic('agent', '--model openai/scripted --api-base {llm.api_base} "
            "-o x', 'one')\n"
            "print('alive', ip.user_ns['x'], len(os.listdir(" + repr(str(runtime)) + ")))\n"
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120)
    assert out.returncode == 0, out.stderr
    # The session was running while the shell was (beside it, the notebook's warm kernel).
    assert re.search(r"alive 1 [12]\b", out.stdout), out.stdout
    assert not list(runtime.iterdir())  # and was shut down when the shell exited
    leftovers = subprocess.run(["pgrep", "-f", str(runtime)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


# ---- one owner per setting: the notebook's config, with the cell's options over it ------


def run_meta(ip: Any) -> dict[str, Any]:
    """The session trace's metadata (its last run is the cell just run)."""
    nb = nbformat.read(ip.run_line_magic("agent_trace", ""), as_version=4)
    nbformat.validate(nb)
    meta: dict[str, Any] = nb.metadata["codeact"]
    return meta


def test_config_agent_max_steps_bounds_a_run_and_the_cell_option_wins_once(
        ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(*[fence(f"step = {n}") for n in range(20)])
    ip.run_line_magic("config", "Agent.max_steps = 3")
    try:
        # Each budget's steps, then the last call for an answer (Agent.answer_on_budget).
        agent_cell(ip, "--new", "never answers")
        assert len(llm.requests) == 3 + 1
        assert run_meta(ip)["runs"][-1]["status"] == "max_steps"
        agent_cell(ip, "--max-steps 1", "one step only")
        assert len(llm.requests) == 4 + 2
        agent_cell(ip, "", "the configured budget again")
        assert len(llm.requests) == 6 + 4
        assert "3 steps ran without final_answer()" in run_meta(ip)["totals"]["reason"]
    finally:
        ip.run_line_magic("config", "Agent.max_steps = 10")


def test_config_llm_model_selects_the_model_and_options_do_not_write_it_back(
        ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(fence("final_answer(1)"), fence("final_answer(2)"), fence("final_answer(3)"))
    agent_cell(ip, "--new", "first")
    assert llm.requests[-1]["model"] == "scripted"
    assert run_meta(ip)["model"] == "openai/scripted"
    agent_cell(ip, "--model openai/other-model", "second")
    assert llm.requests[-1]["model"] == "other-model"
    magics = ip.magics_manager.registry["AgentMagics"]
    assert magics.config.LLM.model == ip.config.LLM.model == "openai/scripted"
    agent_cell(ip, "", "third")  # back on the configured model, in a new session
    assert llm.requests[-1]["model"] == "scripted"


def test_old_agentmagics_settings_still_apply_with_a_warning(
        ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(*[fence(f"step = {n}") for n in range(5)])
    with pytest.warns(DeprecationWarning, match=r"use %config Agent\.max_steps = 2"):
        ip.run_line_magic("config", "AgentMagics.max_steps = 2")
    try:
        agent_cell(ip, "--new", "never answers")
        assert len(llm.requests) == 2 + 1  # and the last call for an answer
    finally:
        ip.run_line_magic("config", "AgentMagics.max_steps = None")
    assert ip.config.Agent.get("max_steps") in (None, 10)  # never written into Agent's


def test_in_sends_a_dataframe_to_a_sandbox_without_pyarrow(
        ip: Any, llm: ScriptedLLMServer, python_without_pyarrow: Path) -> None:
    import sys

    import pandas as pd

    packages = Path(pd.__file__).resolve().parents[1]
    ip.user_ns["sales"] = pd.DataFrame({"when": pd.to_datetime(["2024-01-31", "2024-02-29"]),
                                        "amount": [10.5, 7.25]})
    llm.enqueue(fence("try:\n    import pyarrow\n    missing = False\n"
                      "except ImportError:\n    missing = True\n"
                      "final_answer([missing, str(sales['when'].dtype)[:10],\n"
                      "              float(sales['amount'].sum())])"))
    ip.run_line_magic("config",
                      f"SandboxKernelManager.kernel_python = {str(python_without_pyarrow)!r}")
    ip.run_line_magic("config", "SandboxConfig.extra_ro_binds = "
                      f"{[str(python_without_pyarrow.parents[2]), str(packages)]!r}")
    try:
        agent_cell(ip, "--new --in sales -o seen", "look at the sales")
    finally:
        # Set back to the defaults through %config, which wrote them into every
        # configurable's copy: later tests share this shell.
        ip.run_line_magic("config", f"SandboxKernelManager.kernel_python = {sys.executable!r}")
        ip.run_line_magic("config", "SandboxConfig.extra_ro_binds = []")
    assert ip.user_ns["seen"] == [True, "datetime64", 17.75], run_meta(ip)["totals"]
