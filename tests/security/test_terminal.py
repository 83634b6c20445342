"""Text from the sandbox on the operator's terminal, and outputs a step cleared.

Terminals obey control sequences: OSC 52 writes the clipboard, ESC[2J clears the screen,
C1 bytes act as ESC on some terminals, and bidi overrides reorder what the reader sees.
Everything that `codeact run` and `codeact show` print from the kernel or the model is
escaped to visible text; only newline and tab pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from codeact_kernel.terminal.cli import main

from ..helpers import fence
from ..scripted_llm import ScriptedLLMServer

# Any C0 control but \n and \t, DEL, any C1 control, and the bidi overrides.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
CLIPBOARD = "\x1b]52;c;" + "ZWNobyBwd25lZA==" + "\x07"
HOSTILE = (
    f"print('copy' + {CLIPBOARD!r})\n"
    "print('\\x1b[2J\\x1b[Hscreen cleared')\n"
    "print('\\x9b31mC1 red\\x1b]0;title\\x07\\r\\u202eevil')\n"
    "from IPython.display import display\n"
    "display({'text/plain': 'plain \\x1b[5mblink'}, raw=True)\n"
    "x = 'bell \\x07 done'\n"
    "x\n"
)


@pytest.fixture
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


def step_cell(nb: nbformat.NotebookNode, step: int) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code"
                and c.metadata.get("codeact", {}).get("step") == step)


def run(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, *extra: str) -> int:
    return main(["run", "--model", "openai/scripted", "--api-base", llm.api_base,
                 "--trace", str(tmp_path / "t.ipynb"),
                 f"--KernelSession.runtime_dir={runtime_dir}", *extra])


def test_live_display_escapes_control_sequences(llm: ScriptedLLMServer, tmp_path: Path,
                                                runtime_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(
        fence(HOSTILE, prose="Working \x1b]52;c;cHJvc2U=\x07 on it."),
        fence("raise ValueError('\\x1b[2J gone')"),
        fence("final_answer('answer \\x1b]52;c;YWJj\\x07 end')"),
    )
    assert run(llm, tmp_path, runtime_dir, "--max-steps", "3", "be hostile") == 0
    out = capsys.readouterr().out
    assert not CONTROL.findall(out), sorted(set(CONTROL.findall(out)))
    # Shown, not obeyed: the operator sees what the kernel tried.
    assert "copy\\x1b]52;c;ZWNobyBwd25lZA==\\x07" in out
    assert "\\x1b[2J\\x1b[Hscreen cleared" in out
    assert "\\x9b31mC1 red" in out and "\\u202eevil" in out
    assert "plain \\x1b[5mblink" in out and "ValueError: \\x1b[2J gone" in out
    assert "Final answer: answer \\x1b]52;c;YWJj\\x07 end" in out
    # The trace keeps the bytes exactly as the kernel sent them: it is the record.
    nb = nbformat.read(tmp_path / "t.ipynb", as_version=4)
    assert CLIPBOARD in step_cell(nb, 1).outputs[0]["text"]


def test_show_escapes_control_sequences(llm: ScriptedLLMServer, tmp_path: Path,
                                        runtime_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("raise KeyError('\\x1b]52;c;YQ==\\x07')"),
                fence("final_answer({'k\\x1b[2J': '\\x9b2J'})"))
    assert run(llm, tmp_path, runtime_dir, "--max-steps", "2",
               "task \x1b]0;title\x07 with escapes") == 0
    capsys.readouterr()
    trace = tmp_path / "t.ipynb"
    nb = nbformat.read(trace, as_version=4)
    step = step_cell(nb, 1).metadata["codeact"]
    step["reason"], step["recovery"] = "bad \x1b[2J reason", "interrupted"
    step["tool_calls"] = [{"name": "f\x1b[31m", "arguments": {"a": "\x1b]52;c;YQ==\x07"},
                           "result": "\x9b", "duration": 0.1}]
    nbformat.write(nb, trace)
    assert main(["show", str(trace)]) == 0
    out = capsys.readouterr().out
    assert not CONTROL.findall(out), sorted(set(CONTROL.findall(out)))
    assert "task \\x1b]0;title\\x07 with escapes" in out
    assert "bad \\x1b[2J reason" in out


def test_replay_diff_escapes_control_sequences(llm: ScriptedLLMServer, tmp_path: Path,
                                               runtime_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence("print('same')"), fence("final_answer(1)"))
    assert run(llm, tmp_path, runtime_dir, "--max-steps", "2", "t") == 0
    trace = tmp_path / "t.ipynb"
    nb = nbformat.read(trace, as_version=4)
    step_cell(nb, 1).outputs[0]["text"] = "recorded \x1b]52;c;YQ==\x07\n"
    nbformat.write(nb, trace)
    capsys.readouterr()
    assert main(["replay", str(trace), f"--KernelSession.runtime_dir={runtime_dir}"]) == 1
    out = capsys.readouterr().out
    assert "differs" in out and "recorded \\x1b]52;c;YQ==\\x07" in out
    assert not CONTROL.findall(out)


def test_cleared_outputs_stay_in_the_trace(llm: ScriptedLLMServer, tmp_path: Path,
                                           runtime_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence(
        "from IPython.display import clear_output, display\n"
        "print('transfer of 100 to acct 42 done')\n"
        "display({'text/plain': 'a receipt'}, raw=True)\n"
        "clear_output()\n"
        "print('nothing happened')\n"
        "print('wait-cleared')\n"
        "clear_output(wait=True)\n"
        "print('last')\n"
        "final_answer('ok')"
    ))
    assert run(llm, tmp_path, runtime_dir, "--max-steps", "1", "t") == 0
    assert "transfer of 100 to acct 42 done" in capsys.readouterr().out  # seen live
    nb = nbformat.read(tmp_path / "t.ipynb", as_version=4)
    nbformat.validate(nb)
    cell = step_cell(nb, 1)
    assert [o.get("text") for o in cell.outputs] == ["last\n"]
    cleared = cell.metadata["codeact"]["cleared_outputs"]
    texts = [o.get("text") or o["data"]["text/plain"] for o in cleared]
    assert texts == ["transfer of 100 to acct 42 done\n", "a receipt",
                     "nothing happened\nwait-cleared\n"]
    for output in cleared:  # each one a valid nbformat output, ready to be shown again
        nbformat.validate(nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("", outputs=[nbformat.from_dict(output)])]))


def test_cleared_outputs_are_bounded(llm: ScriptedLLMServer, tmp_path: Path,
                                     runtime_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    llm.enqueue(fence(
        "from IPython.display import clear_output\n"
        "for i in range(3000):\n"
        "    print(f'progress {i}')\n"
        "    clear_output(wait=True)\n"
        "final_answer('ok')"
    ))
    assert run(llm, tmp_path, runtime_dir, "--max-steps", "1",
               "--KernelSession.max_cleared_outputs=50", "t") == 0
    nb = nbformat.read(tmp_path / "t.ipynb", as_version=4)
    meta = step_cell(nb, 1).metadata["codeact"]
    assert len(meta["cleared_outputs"]) == 50
    # The kernel may send several prints as one stream message, so the count of cleared
    # outputs varies; what was not kept is counted, never silently lost.
    assert 0 < meta["cleared_outputs_dropped"] <= 2999 - 50
    # The first ones are kept: what was seen first is what a later clear would hide.
    assert meta["cleared_outputs"][0]["text"].startswith("progress 0\n")
