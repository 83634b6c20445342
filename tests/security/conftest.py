"""Fixtures of the attack tests: a scripted model, a host tool with side effects, and the
``%%agent`` magic in IPython's own testing shell."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython import get_ipython
from IPython.testing.globalipapp import start_ipython

from ..scripted_llm import ScriptedLLMServer
from .helpers import Bank


@pytest.fixture
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def bank() -> Bank:
    return Bank()


@pytest.fixture(scope="module")
def ip() -> Any:
    # IPython's testing shell is one per process: a module that ran before started it.
    shell = start_ipython() or get_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "codeact_kernel")
    return shell


@pytest.fixture
def magic_llm(ip: Any, tmp_path: Path) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        ip.run_line_magic("config", "AgentMagics.model = 'openai/scripted'")
        ip.run_line_magic("config", f"AgentMagics.api_base = {server.api_base!r}")
        ip.run_line_magic("config", f"AgentMagics.trace_dir = {str(tmp_path)!r}")
        yield server
    ip.magics_manager.registry["AgentMagics"].close()
