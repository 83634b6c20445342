"""Shared helpers for tests that run whole agents against a scripted model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

from codeact_kernel import Agent
from codeact_kernel.terminal.demo import demo_tools
from codeact_kernel.trace.notebook import SETUP_TAG

from .scripted_llm import ScriptedLLMServer


def fence(code: str, prose: str = "Let me do that.") -> str:
    return f"{prose}\n```python\n{code}\n```"


def make_agent(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, **kw: Any) -> Agent:
    tools = kw.pop("tools", demo_tools())
    agent = Agent(
        model="openai/scripted", api_base=llm.api_base, tools=tools,
        trace_path=str(tmp_path / "trace.ipynb"), **kw,
    )
    agent.session.runtime_dir = str(runtime_dir)
    agent.llm.max_retries = 1
    agent.llm.retry_backoff = 0.05
    return agent


def load_trace(path: str) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list[Any]:
    return [c for c in nb.cells
            if c.cell_type == "code" and SETUP_TAG not in c.metadata.get("tags", [])]


def ipython_shell() -> Any:
    """IPython's testing shell with the extension loaded.

    The shell is one per process: ``start_ipython`` returns it the first time only, so a
    module that runs after another that started it must find it with ``get_ipython``.
    """
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "codeact_kernel")
    return shell
