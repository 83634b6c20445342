"""Fixtures of the attack tests: a scripted model, a host tool with side effects, and the
``%%agent`` magic in IPython's own testing shell."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import ipython_shell
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
    return ipython_shell()


@pytest.fixture
def magic_llm(ip: Any, tmp_path: Path) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        ip.run_line_magic("config", "LLM.model = 'openai/scripted'")
        ip.run_line_magic("config", f"LLM.api_base = {server.api_base!r}")
        ip.run_line_magic("config", f"Agent.trace_dir = {str(tmp_path)!r}")
        yield server
    ip.magics_manager.registry["AgentMagics"].close()
