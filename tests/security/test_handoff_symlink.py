"""Finding 1: ``%%agent --in`` must never write through anything the kernel can write.

The attack: an earlier step, with policy-clean ``pathlib`` code, plants symlinks where the
hand-off used to put its files (``.codeact/in/<name>.<suffix>`` in the kernel's writable
work folder), pointing at a root-only host file. The next ``--in`` wrote the user's
variable through the link and made the target world-readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from codeact_kernel.errors import CodeActError

from ..scripted_llm import ScriptedLLMServer
from .helpers import agent_cell, fence

SUFFIXES = (".json", ".parquet", ".npy", ".pickle")


def plant(secret: Path, names: list[str]) -> str:
    """Step code that plants a symlink to ``secret`` under every name the hand-off used."""
    links = "".join(f"(d / {name + suffix!r}).symlink_to({str(secret)!r})\n"
                    for name in names for suffix in SUFFIXES)
    return ("import pathlib\n"
            "d = pathlib.Path('.codeact') / 'in'\n"
            "d.mkdir(parents=True, exist_ok=True)\n"
            f"{links}"
            "final_answer(sorted(p.name for p in d.iterdir()))")


def vault(tmp_path: Path) -> Path:
    folder = tmp_path / "vault"
    folder.mkdir(mode=0o700)
    secret = folder / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    return secret


def test_planted_symlinks_cannot_steer_the_handoff(ip: Any, magic_llm: ScriptedLLMServer,
                                                    tmp_path: Path) -> None:
    secret = vault(tmp_path)
    magic_llm.enqueue(fence(plant(secret, ["data", "frame"])))
    agent_cell(ip, "--new -o planted", "plant the links")
    assert len(ip.user_ns["planted"]) == 2 * len(SUFFIXES)  # the links are really there

    ip.user_ns["data"] = {"amount": 12, "to": "Ada"}
    ip.user_ns["frame"] = pd.DataFrame({"x": [1, 2, 3]})
    magic_llm.enqueue(fence("final_answer([data, int(frame['x'].sum())])"))
    try:
        agent_cell(ip, "--in data,frame -o got", "use the data")
    finally:
        assert secret.read_text() == "root only"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert ip.user_ns["got"] == [{"amount": 12, "to": "Ada"}, 6]


def test_handoff_writes_nothing_into_the_work_folder(ip: Any, magic_llm: ScriptedLLMServer
                                                     ) -> None:
    magic_llm.enqueue(fence("final_answer(1)"))
    agent_cell(ip, "--new", "start")
    magics = ip.magics_manager.registry["AgentMagics"]
    work = magics.current.session.work_path
    before = set(os.listdir(work))
    ip.user_ns["numbers"] = [1, 2, 3]
    magic_llm.enqueue(fence("import pathlib\n"
                            "names = sorted(p.name for p in pathlib.Path('.').iterdir())\n"
                            "final_answer([numbers, names])"))
    agent_cell(ip, "--in numbers -o seen", "look around")
    numbers, listing = ip.user_ns["seen"]
    assert numbers == [1, 2, 3]
    assert set(listing) == before == set(os.listdir(work))


def test_handoff_failure_says_what_failed(ip: Any, magic_llm: ScriptedLLMServer) -> None:
    # A step breaks what the hand-off's loader uses in the kernel: the error must name
    # that failure, not blame a missing package.
    magic_llm.enqueue(fence("import pandas\npandas.read_parquet = None\nfinal_answer(1)"))
    agent_cell(ip, "--new", "break the parquet reader")
    ip.user_ns["payload"] = pd.DataFrame({"a": [1]})
    with pytest.raises(CodeActError) as info:
        agent_cell(ip, "--in payload", "use it")
    message = str(info.value)
    assert "payload" in message and "TypeError" in message
    assert "may lack" not in message


def test_handoff_of_a_missing_package_names_it(ip: Any, magic_llm: ScriptedLLMServer) -> None:
    ip.run_line_magic("config", "Policy.authorized_imports = ['sys']")
    magic_llm.enqueue(fence("import sys\nsys.modules['pandas'] = None\nfinal_answer(1)"))
    agent_cell(ip, "--new", "hide pandas")
    ip.user_ns["table"] = pd.DataFrame({"x": [1]})
    with pytest.raises(CodeActError, match=r"pandas") as info:
        agent_cell(ip, "--in table", "use it")
    assert "table" in str(info.value)
