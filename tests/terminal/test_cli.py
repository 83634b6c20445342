"""The `codeact` command: live output, exit codes, clear errors, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from codeact_kernel.terminal.cli import main

from ..helpers import fence
from ..scripted_llm import ScriptedLLMServer


@pytest.fixture
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


def run_args(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, *extra: str) -> list[str]:
    return ["run", "--model", "openai/scripted", "--api-base", llm.api_base,
            "--trace", str(tmp_path / "t.ipynb"), f"--KernelSession.runtime_dir={runtime_dir}",
            *extra]


def test_run_shows_steps_and_answer(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("print('cities:', search_cities('Japan'))"),
                fence("final_answer(get_population('Osaka'))"))
    code = main(run_args(llm, tmp_path, runtime_dir, "--demo", "Population of Osaka?"))
    out = capsys.readouterr().out
    assert code == 0
    assert "── step 1" in out and "search_cities('Japan')" in out
    assert "cities: ['Tokyo', 'Osaka', 'Nagoya']" in out
    assert "tools: search_cities" in out and "code " in out  # timing footer
    assert "Final answer: 2750000" in out
    assert f"Trace: {tmp_path / 't.ipynb'}" in out
    nbformat.validate(nbformat.read(tmp_path / "t.ipynb", as_version=4))


def test_failure_exits_non_zero(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("x = 1"))
    code = main(run_args(llm, tmp_path, runtime_dir, "--max-steps", "1", "never answers"))
    assert code == 1
    assert "No answer (max_steps)" in capsys.readouterr().out


def test_bad_inputs_get_clear_errors(tmp_path: Path, runtime_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "task", "--tools", "no_such_module_xyz:f"]) == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    assert main(["run", "task", "--tools", "os.path:nothing_here"]) == 2
    assert "has no attribute 'nothing_here'" in capsys.readouterr().err
    (tmp_path / "untyped_tools.py").write_text(
        "def f(x):\n    '''Doc.\n\n    Args:\n        x: a value.\n    '''\n    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["run", "task", "--tools", "untyped_tools:f"]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    assert "annotation" in capsys.readouterr().err
    assert main(["run", "task", "--bogus-flag"]) == 2
    assert "unrecognized arguments: --bogus-flag" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "no task given" in capsys.readouterr().err
    assert main(["run", "task", "--model", "not-a-provider-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_unsafe_mode_is_loud(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
                             capfd: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("final_answer(1)"))
    with pytest.warns(UserWarning, match="WITHOUT A SANDBOX"):
        assert main(run_args(llm, tmp_path, runtime_dir, "--unsafe-no-sandbox", "one")) == 0
    assert "WITHOUT A SANDBOX" in capfd.readouterr().err


def test_ctrl_c_saves_trace_and_shuts_kernel(llm: ScriptedLLMServer, tmp_path: Path,
                                             runtime_dir: Path) -> None:
    llm.enqueue(fence("import time\nprint('working', flush=True)\ntime.sleep(120)"))
    cmd = [sys.executable, "-m", "codeact_kernel.terminal.cli",
           *run_args(llm, tmp_path, runtime_dir, "--step-timeout", "300", "--demo", "slow")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if "working" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; the trace was saved" in err
    nb = nbformat.read(tmp_path / "t.ipynb", as_version=4)
    assert nb.metadata["codeact"]["status"] == "interrupted"
    assert not list(runtime_dir.iterdir())  # the kernel and its session folder are gone
