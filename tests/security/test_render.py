"""Sandbox outputs rendered on the host: the %%agent display and the HTML export.

JupyterLab trusts outputs produced while a cell runs, so a MIME bundle that the sandbox
sends and the magic re-displays runs with the user's Jupyter token (terminals, kernels:
a host shell). The same bundles, and the model's prose, are live in an exported page.
Each test drives the real path: the magic in IPython's testing shell on a real sandboxed
kernel, and the export through real nbconvert.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from codeact_kernel.trace.report import export_html

from ..helpers import fence, ipython_shell, make_agent
from ..scripted_llm import ScriptedLLMServer
from .active import active_in_bundle, active_in_html

# A 1x1 PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)).decode()

HOSTILE_OUTPUTS = f"""\
from IPython.display import HTML, SVG, Javascript, Markdown, display
import pandas as pd
display(Javascript("alert('js')"))
display(HTML("<script>alert('html')</script><b>bold kept</b>"))
display(HTML('<img src=x onerror="alert(1)"><a href="javascript:alert(2)">link</a>'))
display(HTML('<iframe srcdoc="<script>alert(3)</script>"></iframe><style>*{{x:1}}</style>'))
display(Markdown('md <img src=x onerror=alert(4)> [c](javascript:alert(5)) <script>x</script>'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(6)</script>'
            '<circle r="5" onload="alert(7)"/></svg>'))
display({{'application/vnd.jupyter.widget-view+json': {{'model_id': 'm'}},
          'text/plain': 'a widget'}}, raw=True)
display({{'application/x-evil': 'zzz'}}, raw=True)
display({{'image/png': '{PNG}'}},
        metadata={{'image/png': {{'width': '1 onerror=alert(8)', 'height': 4}}}}, raw=True)
display({{'image/png': 'AAAA" onerror="alert(9)'}}, raw=True)
pd.DataFrame({{'a': [1, 2], 'b': ['<script>alert(10)</script>', 'y']}})
"""
FAILING = "raise ValueError('<img src=x onerror=alert(11)>')"
BLOCKED = "open('/<img src=x onerror=alert(12)>')"
# The kernel signs its own replies: a step's status is whatever it says.
FORGED_STATUS = """\
k = get_ipython().kernel
sock = getattr(k, 'shell_socket', None) or k.shell_stream
k.session.send(sock, 'execute_reply', {'status': '<img src=x onerror=alert(18)>',
               'execution_count': 1}, parent=k.get_parent(), ident=k._parent_ident['shell'])
"""
PROSE = ("I will <script>alert('prose')</script> now <img src=x onerror=alert(13)> "
         "[click](javascript:alert(14)) <a href='javascript:alert(15)'>a</a>")
REMOVED = ["application/javascript", "application/vnd.jupyter.widget-view+json",
           "application/x-evil"]


# ---- the %%agent display ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ip() -> Iterator[Any]:
    shell = ipython_shell()
    # The testing shell formats text/plain only, as a terminal does; a notebook's kernel
    # formats every type, so the display's own Markdown and HTML must be seen too.
    active = shell.display_formatter.active_types
    shell.display_formatter.active_types = list(shell.display_formatter.format_types)
    yield shell
    shell.display_formatter.active_types = active


@pytest.fixture
def llm(ip: Any, tmp_path: Path) -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        ip.run_line_magic("config", "LLM.model = 'openai/scripted'")
        ip.run_line_magic("config", f"LLM.api_base = {server.api_base!r}")
        ip.run_line_magic("config", f"Agent.trace_dir = {str(tmp_path)!r}")
        yield server
    ip.magics_manager.registry["AgentMagics"].close()


def shown(cap: Any) -> list[dict[str, Any]]:
    return [{"data": o.data, "metadata": o.metadata or {}} for o in cap.outputs]


def test_agent_display_never_shows_active_content(ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(fence(HOSTILE_OUTPUTS, prose=PROSE), fence(FAILING), fence(BLOCKED),
                fence(FORGED_STATUS))
    with capture_output() as cap:
        ip.run_cell_magic("agent", "--max-steps 4 --new", "show me things")
    outputs = shown(cap)
    assert outputs, "the magic displayed nothing"
    for output in outputs:
        assert not active_in_bundle(output["data"]), output
        for meta in output["metadata"].values():
            assert not isinstance(meta, dict) or all(
                isinstance(meta[k], int) for k in ("width", "height") if k in meta), meta
    htmls = [o["data"]["text/html"] for o in outputs if "text/html" in o["data"]]
    # What is harmless still shows: a DataFrame as a table, bold text, the PNG.
    assert any("<table" in h and "&lt;script&gt;alert(10)" in h for h in htmls), htmls
    assert any("<b>bold kept</b>" in h for h in htmls)
    assert any(o["data"].get("image/png") == PNG for o in outputs)
    assert not any(o["data"].get("image/png", PNG) != PNG for o in outputs)  # broken base64
    # And what was removed is said, visibly, in the cell.
    said = cap.stdout + "".join(str(o["data"].get("text/plain", "")) for o in outputs)
    for mime in REMOVED:
        assert mime in said, said


def test_trusted_outputs_are_an_explicit_loud_opt_in(ip: Any, llm: ScriptedLLMServer) -> None:
    js = "from IPython.display import Javascript, display\ndisplay(Javascript('1+1'))"
    llm.enqueue(fence(js), fence("final_answer(1)"), fence(js), fence("final_answer(2)"))
    with capture_output() as cap:
        ip.run_cell_magic("agent", "--trust-outputs --new", "plot interactively")
    assert any("application/javascript" in o.data for o in cap.outputs)
    assert "trusted" in cap.stderr and "JavaScript" in cap.stderr
    with capture_output() as cap:
        ip.run_cell_magic("agent", "", "again, not trusted")
    assert not any("application/javascript" in o.data for o in cap.outputs)
    assert "trusted" not in cap.stderr


def test_trusting_by_configuration_warns_on_every_cell(ip: Any, llm: ScriptedLLMServer) -> None:
    llm.enqueue(fence("final_answer(1)"), fence("final_answer(2)"))
    ip.run_line_magic("config", "OutputFirewall.trusted = True")
    try:
        for _ in range(2):
            with capture_output() as cap:
                ip.run_cell_magic("agent", "", "a task")
            assert "trusted" in cap.stderr and "JavaScript" in cap.stderr
    finally:
        ip.run_line_magic("config", "OutputFirewall.trusted = False")


# ---- codeact export --html ----------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    runtime = tmp / "runtime"
    runtime.mkdir()
    with ScriptedLLMServer([fence(HOSTILE_OUTPUTS, prose=PROSE), fence(FAILING, prose=PROSE),
                            fence(BLOCKED), fence("final_answer('<script>alert(16)</script>')")
                            ]) as llm:
        result = make_agent(llm, tmp, runtime, max_steps=4).run(
            "task <img src=x onerror=alert(17)>")
    assert result.status == "answered", result.reason
    return Path(result.trace_path)


def test_exported_page_runs_nothing_from_the_trace(hostile_trace: Path, tmp_path: Path) -> None:
    page = export_html(hostile_trace, tmp_path / "page.html").read_text()
    assert not active_in_html(page, page=True), active_in_html(page, page=True)
    assert "<script" not in page.lower()  # not even the template's own
    head = re.search(r"<head[^>]*>(.*?)</head>", page, re.S | re.I)
    assert head is not None
    first = re.match(r"\s*<meta[^>]*>", head.group(1))
    assert first is not None and "Content-Security-Policy" in first.group(0), head.group(1)[:300]
    csp = re.search(r'content="([^"]*)"', first.group(0))
    assert csp is not None
    policy = {d.split()[0]: d.split()[1:] for d in csp.group(1).split(";") if d.strip()}
    assert policy["default-src"] == ["'none'"]
    assert policy.get("script-src", ["'none'"]) == ["'none'"]
    # The record is still readable: prose as text, the table, the plot, what was removed.
    assert "<table" in page and "&lt;script&gt;alert(10)" in page
    assert f"data:image/png;base64,{PNG}" in page
    assert "I will" in page and "application/javascript" in page
