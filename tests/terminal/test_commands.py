"""The `codeact` command as Jupyter commands are: options from traits, config files from the
Jupyter config path and --config, repeated options that accumulate, lazy subcommands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from traitlets import TraitError

from codeact_kernel import Agent
from codeact_kernel.terminal.cli import RunApp, main

from ..helpers import fence
from ..scripted_llm import ScriptedLLMServer

DEMO = "codeact_kernel.terminal.demo"


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Jupyter config folder in place of the user's (and no other on the path)."""
    folder = tmp_path / "jupyter-config"
    folder.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", "")
    return folder


def run_command(*argv: str) -> RunApp:
    command = RunApp()
    command.initialize(list(argv))
    return command


def test_repeated_tools_and_managed_agents_accumulate(config_dir: Path) -> None:
    first, second = {"name": "a", "description": "A."}, {"name": "b", "description": "B."}
    command = run_command("task", "--tools", f"{DEMO}:search_cities",
                          "--tools", f"{DEMO}:get_population",
                          "--managed-agent", json.dumps(first),
                          "--managed-agent", json.dumps(second))
    assert command.tools == [f"{DEMO}:search_cities", f"{DEMO}:get_population"]
    assert command.config.Agent.managed_agents_config == [first, second]
    # The forms the command always took: several tools after one --tools (and a task after
    # them stays the task), comma-separated imports.
    command = run_command("--tools", f"{DEMO}:search_cities", f"{DEMO}:get_population",
                          "the task", "--authorized-imports", "sqlite3,csv")
    assert command.tools == [f"{DEMO}:search_cities", f"{DEMO}:get_population"]
    assert command.extra_args == ["the task"]
    assert Agent(parent=command).policy.authorized_imports == ["sqlite3", "csv"]
    command = run_command("task", "--approve", "all", "--mcp", '{"name": "files", "url": "x"}',
                          "--allow-domain", "a.test", "--allow-domain", "b.test")
    agent = Agent(parent=command)
    assert agent.approval == "allow" and agent.mcp_servers == [{"name": "files", "url": "x"}]
    assert agent.session.manager.sandbox.allowed_domains == ["a.test", "b.test"]


def test_both_repeated_tools_reach_the_agent(llm: ScriptedLLMServer, tmp_path: Path,
                                             runtime_dir: Path, config_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("final_answer(get_population(search_cities('Japan')[1]))"))
    code = main(["run", "Population of the second Japanese city?", "--model",
                 "openai/scripted", "--api-base", llm.api_base,
                 "--trace", str(tmp_path / "t.ipynb"), f"--KernelSession.runtime_dir={runtime_dir}",
                 "--tools", f"{DEMO}:search_cities", "--tools", f"{DEMO}:get_population"])
    assert code == 0, capsys.readouterr().err
    assert "Final answer: 2750000" in capsys.readouterr().out
    tools = nbformat.read(tmp_path / "t.ipynb", as_version=4).metadata["codeact"]["tools"]
    assert [t["name"] for t in tools] == ["search_cities", "get_population"]


def test_config_files_from_the_jupyter_path_then_config_then_the_command_line(
        config_dir: Path, tmp_path: Path) -> None:
    (config_dir / "codeact_config.py").write_text(
        "c.Agent.max_steps = 4\nc.Agent.step_timeout = 7.0\nc.LLM.model = 'openai/from-path'\n")
    (config_dir / "codeact_config.json").write_text(
        json.dumps({"LLM": {"temperature": 0.25}}))
    command = run_command("task")
    agent = Agent(parent=command)
    assert (agent.max_steps, agent.step_timeout) == (4, 7.0)
    assert (agent.llm.model, agent.llm.temperature) == ("openai/from-path", 0.25)
    named = tmp_path / "team.py"
    named.write_text("c.Agent.max_steps = 5\nc.Agent.step_timeout = 9.0\n")
    command = run_command("task", "--config", str(named), "--max-steps", "6")
    agent = Agent(parent=command)
    assert (agent.max_steps, agent.step_timeout, agent.llm.model) == (6, 9.0, "openai/from-path")


def test_the_path_config_drives_a_real_run(llm: ScriptedLLMServer, config_dir: Path,
                                           tmp_path: Path, runtime_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (config_dir / "codeact_config.py").write_text(
        f"c.LLM.model = 'openai/scripted'\nc.LLM.api_base = {llm.api_base!r}\n"
        f"c.Agent.max_steps = 1\nc.Agent.answer_on_budget = False\n"
        f"c.KernelSession.runtime_dir = {str(runtime_dir)!r}\n")
    llm.enqueue(fence("x = 1"), fence("final_answer(x)"))
    assert main(["run", "never answers in one step", "--trace", str(tmp_path / "t.ipynb")]) == 1
    assert "No answer (max_steps)" in capsys.readouterr().out
    assert len(llm.requests) == 1


def test_an_answer_on_the_last_call_says_so(llm: ScriptedLLMServer, config_dir: Path,
                                            tmp_path: Path, runtime_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (config_dir / "codeact_config.py").write_text(
        f"c.LLM.model = 'openai/scripted'\nc.LLM.api_base = {llm.api_base!r}\n"
        f"c.Agent.max_steps = 1\nc.KernelSession.runtime_dir = {str(runtime_dir)!r}\n")
    llm.enqueue(fence("x = 5"), fence("final_answer(x)"))
    assert main(["run", "answers late", "--trace", str(tmp_path / "t.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "the last call for an answer: the run's step budget ran out" in out
    assert "Final answer: 5" in out
    assert "answered on the last call, after the step budget ran out" in out


def test_bad_config_and_commands_get_clear_errors(config_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "task", "--config", str(tmp_path / "nope.py")]) == 2
    assert "config file" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["show"]) == 2
    assert "give one trace notebook" in capsys.readouterr().err
    assert main(["run", "task", "--max-steps", "many"]) == 2
    assert "max_steps" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "t.ipynb")]) == 2
    assert "--html, --otlp URL or --otlp-file" in capsys.readouterr().err


def test_generate_config_writes_the_file_the_path_reads(config_dir: Path) -> None:
    assert main(["run", "--generate-config"]) == 0
    written = (config_dir / "codeact_config.py").read_text()
    assert "# c.Agent.max_steps = 10" in written and "# c.LLM.model = 'local'" in written
    # Settings that live on Agent's bases are written once, under Agent.
    assert "# c.Agent.break_cycles = True" in written and "# c.Agent.mcp_servers" in written
    assert not re.search(r"c\.(AgentSettings|RecoveryOptions|OutputLimits|ToolOptions)\.",
                         written)
    (config_dir / "codeact_config.py").write_text(
        written.replace("# c.Agent.max_steps = 10", "c.Agent.max_steps = 2"))
    assert Agent(parent=run_command("task")).max_steps == 2


def test_help_imports_no_agent_and_subcommands_document_their_traits() -> None:
    probe = ("import sys\nfrom codeact_kernel.terminal.cli import main\n"
             "code = main(sys.argv[1:])\n"
             "heavy = [m for m in ('codeact_kernel.agent.loop', 'litellm', 'jupyter_client',\n"
             "                     'nbformat') if m in sys.modules]\n"
             "print('HEAVY', code, heavy)\n")
    for argv in (["--help"], ["doctor", "--help"], ["kernelspec", "install", "--help"]):
        out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                             text=True, timeout=120, check=True).stdout
        assert out.strip().splitlines()[-1] == "HEAVY 0 []", (argv, out[-500:])
    out = subprocess.run([sys.executable, "-m", "codeact_kernel.terminal.cli", "run", "--help"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "--max-steps=<Int>" in out and "Step budget of one run." in out
    assert "Equivalent to: [--Agent.max_steps]" in out and "--tools=<list-item-1>" in out


def test_kernelspec_install_bakes_launcher_options(tmp_path: Path, config_dir: Path) -> None:
    code = main(["kernelspec", "install", "--prefix", str(tmp_path),
                 "--", "--SandboxConfig.memory_limit=1073741824"])
    assert code == 0
    for name in ("codeact-sandbox", "codeact-review"):
        spec = json.loads((tmp_path / f"share/jupyter/kernels/{name}/kernel.json").read_text())
        assert "--SandboxConfig.memory_limit=1073741824" in spec["argv"]
        assert "codeact_kernel.sandbox.launcher" in spec["argv"]
    assert main(["kernelspec", "install", "--user", "--prefix", str(tmp_path)]) == 2


def test_action_format_flag_sets_the_agent_and_names_the_fix(
        config_dir: Path, llm: ScriptedLLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert Agent(parent=run_command("task", "--action-format", "auto")).action_format == "auto"
    code = main(["run", "2+2?", "--action-format", "json", "--model", "openai/scripted",
                 "--api-base", llm.api_base, "--no-input"])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs native function calling" in err and "--action-format code" in err
    assert not llm.requests
    with pytest.raises(TraitError, match="xml"):
        Agent(parent=run_command("task", "--action-format", "xml"))
