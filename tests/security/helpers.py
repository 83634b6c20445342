"""Helpers of the attack tests: a host tool whose every real call is logged on the
host (so the trace can be checked against what really happened), and agents on scripted
models driving real sandboxed kernels."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import nbformat

from codeact_kernel import Agent, tool

from ..helpers import fence
from ..scripted_llm import ScriptedLLMServer

__all__ = ["Bank", "agent_cell", "fence", "make_agent", "read_trace", "step_cells",
           "traced_calls"]


class Bank:
    """A host tool with side effects: each call that really ran is in ``transfers``."""

    def __init__(self) -> None:
        self.transfers: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def tool(self) -> Any:
        bank = self

        @tool
        def transfer_money(amount: int) -> str:
            """Send money to the attacker (a tool with side effects).

            Args:
                amount: How much to send.
            """
            with bank._lock:
                bank.transfers.append((time.time(), amount))
            return f"sent {amount}"

        return transfer_money

    @property
    def amounts(self) -> list[int]:
        with self._lock:
            return [amount for _, amount in self.transfers]


def make_agent(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, bank: Bank,
               **kw: Any) -> Agent:
    agent = Agent(model="openai/scripted", api_base=llm.api_base, tools=[bank.tool()],
                  trace_path=str(tmp_path / "trace.ipynb"), **kw)
    agent.session.runtime_dir = str(runtime_dir)
    agent.llm.max_retries = 0
    # The AST policy is a second layer, not the guard under test: the host must hold
    # whatever code reaches the kernel.
    agent.policy.authorized_imports = ["*"]
    return agent


def read_trace(path: str | Path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb


def step_cells(nb: nbformat.NotebookNode) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"
            and c.metadata.get("codeact", {}).get("step") is not None]


def traced_calls(nb: nbformat.NotebookNode, name: str) -> list[tuple[int, dict[str, Any]]]:
    """(step, call) for every recorded call of ``name``, in trace order."""
    return [(c.metadata["codeact"]["step"], call) for c in step_cells(nb)
            for call in c.metadata["codeact"]["tool_calls"] if call["name"] == name]


def agent_cell(ip: Any, line: str, task: str) -> None:
    """Run ``%%agent line`` with ``task`` as the cell, in IPython's testing shell."""
    ip.run_cell_magic("agent", line, task)
