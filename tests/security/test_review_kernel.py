"""Run All on a trace in JupyterLab: the review kernelspec between the frontend and the sandbox.

A reviewer who re-runs a trace runs the agent's code again, and the outputs of a running
cell are trusted by JupyterLab. The review kernelspec parses what the kernel sends, passes
its MIME bundles through the output firewall, and re-signs every message with the
frontend's key, while the kernel has a key of its own: the kernel can sign whatever it
likes, but never as the frontend, and the frontend's key never enters the sandbox.
Driven by a real jupyter_client, launched as a frontend launches a kernelspec.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import zmq
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session
from nbclient import NotebookClient

from codeact_kernel.sandbox.kernelspec import (
    REVIEW_DISPLAY_NAME,
    REVIEW_KERNEL_NAME,
    install_kernelspec,
    kernel_json,
)

from ..helpers import fence, make_agent
from ..scripted_llm import ScriptedLLMServer
from .active import active_in_bundle

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)

KERNEL = REVIEW_KERNEL_NAME

HOSTILE = """\
from IPython.display import HTML, Javascript, display
import pandas as pd
display(Javascript("alert('js')"))
display(HTML("<script>alert('html')</script><b>kept</b>"))
k = get_ipython().kernel
parent = k.get_parent()
# Forged outright: the kernel signs with its own key whatever it likes.
k.session.send(k.iopub_socket, 'display_data',
               {'data': {'application/javascript': 'alert(1)',
                         'text/html': '<img src=x onerror=alert(2)>'}, 'metadata': {}},
               parent=parent, ident=b'display_data')
k.session.send(k.iopub_socket, 'comm_open',
               {'comm_id': 'c1', 'target_name': 'jupyter.widget',
                'data': {'state': {'_model_module': 'https://evil.example/x.js'}}},
               parent=parent)
pd.DataFrame({'a': [1, 2], 'b': ['<script>alert(3)</script>', 'y']})
"""
# What the agent's step did (policy-clean); Run All re-runs it on the trace's kernelspec.
AGENT_STEP = """\
from IPython.display import HTML, Javascript, display
import pandas as pd
display(Javascript("alert('js')"))
display(HTML("<script>alert('html')</script><b>kept</b>"))
pd.DataFrame({'a': [1, 2]})
"""


@pytest.fixture(scope="module", autouse=True)
def installed() -> Iterator[dict[str, Path]]:
    runtime = Path(tempfile.mkdtemp(prefix="ckv-"))
    prefix = Path(tempfile.mkdtemp(prefix="ckv-prefix-"))
    install_kernelspec(prefix=str(prefix), review=True,
                       launcher_args=[f"--runtime-dir={runtime}"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        yield {"runtime": runtime, "prefix": prefix}
    subprocess.run(["rm", "-rf", str(runtime), str(prefix)], check=False)


@pytest.fixture(scope="module")
def kernel() -> Iterator[tuple[KernelManager, Any]]:
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc: Any, code: str, timeout: float = 30, **kw: Any) -> tuple[dict[str, Any],
                                                                           list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=seen.append, **kw)
    return reply, seen


def stdout(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def test_active_outputs_arrive_filtered(kernel: tuple[KernelManager, Any]) -> None:
    _, kc = kernel
    reply, seen = execute(kc, HOSTILE)
    assert reply["content"]["status"] == "ok", reply["content"]
    bundles = [m["content"]["data"] for m in seen if "data" in m["content"]]
    assert bundles
    for data in bundles:
        assert not active_in_bundle(data), data
    assert not [m for m in seen if m["msg_type"].startswith("comm_")]
    htmls = [d["text/html"] for d in bundles if "text/html" in d]
    assert any("<b>kept</b>" in h for h in htmls)
    assert any("<table" in h and "&lt;script&gt;" in h for h in htmls)
    notes = " ".join(str(d.get("text/plain", "")) for d in bundles)
    assert "application/javascript" in notes  # the removal is said, in the output itself


def test_replies_with_bundles_are_filtered(kernel: tuple[KernelManager, Any]) -> None:
    _, kc = kernel
    reply, _ = execute(kc, (
        "k = get_ipython().kernel\n"
        "k.shell.object_inspect_mime = lambda *a, **kw: {\n"
        "    'text/plain': 'doc', 'application/javascript': 'alert(1)',\n"
        "    'text/html': '<svg onload=alert(2)>'}\n"
        "k.help_links = [{'text': 'help', 'url': 'javascript:alert(3)'},\n"
        "                {'text': 'docs', 'url': 'https://docs.python.org'}]\n"
        "get_ipython().payload_manager.write_payload({'source': 'page', 'start': 0,\n"
        "    'data': {'text/plain': 'p', 'text/html': '<script>alert(4)</script>'}})\n"
    ))
    for payload in reply["content"].get("payload", []):
        assert not active_in_bundle(payload.get("data", {})), payload
    inspected = kc.inspect("k", reply=True, timeout=10)["content"]
    assert inspected["data"]["text/plain"].startswith("doc\n[codeact: removed")
    assert not active_in_bundle(inspected["data"]), inspected
    info = kc.kernel_info(reply=True, timeout=10)["content"]
    assert [link["url"] for link in info["help_links"]] == ["https://docs.python.org"]


def test_the_frontend_key_never_enters_the_sandbox(kernel: tuple[KernelManager, Any],
                                                   installed: dict[str, Path]) -> None:
    km, kc = kernel
    frontend_key = km.session.key.decode()
    assert len(frontend_key) >= 32
    _, seen = execute(kc, (
        "import json, os\n"
        "from ipykernel.connect import get_connection_file\n"
        "info = json.load(open(get_connection_file()))\n"
        "print(json.dumps({'file': info, 'env': dict(os.environ),\n"
        "                  'session': get_ipython().kernel.session.key.decode()}))\n"
    ))
    inside = stdout(seen)
    assert inside and frontend_key not in inside
    seen_inside = json.loads(inside)
    assert len(seen_inside["session"]) >= 32 and seen_inside["session"] != frontend_key
    # Nor on any file the sandbox can see: its whole session folder on the host.
    for path in installed["runtime"].rglob("*"):
        if path.is_file():
            assert frontend_key.encode() not in path.read_bytes(), path


def test_execute_stdin_and_interrupt_work(kernel: tuple[KernelManager, Any]) -> None:
    km, kc = kernel

    def answer(msg: dict[str, Any]) -> None:
        kc.input("Ada")

    reply, seen = execute(kc, "name = input('name? ')\nprint('hello', name)",
                          allow_stdin=True, stdin_hook=answer)
    assert reply["content"]["status"] == "ok" and stdout(seen) == "hello Ada\n"
    msg_id = kc.execute("import time\ntime.sleep(60)")
    time.sleep(1.0)
    started = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 10
    reply, seen = execute(kc, "print(21 * 2)")
    assert stdout(seen) == "42\n"


def test_forged_and_replayed_requests_are_dropped(kernel: tuple[KernelManager, Any]) -> None:
    km, kc = kernel
    info = km.get_connection_info()
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        forger = Session(key=b"not-the-frontend-key", signature_scheme="hmac-sha256")
        forger.send(sock, "execute_request", {"code": "print('forged')", "silent": False})
        assert not sock.poll(2000), "a request signed with the wrong key was answered"
        honest = Session(key=km.session.key, signature_scheme="hmac-sha256")
        msg = honest.msg("execute_request", {"code": "1", "silent": True})
        frames = honest.serialize(msg)
        sock.send_multipart(frames)
        assert sock.poll(10000), "a correctly signed request got no reply"
        sock.recv_multipart()
        sock.send_multipart(frames)  # the same signed bytes again: a replay
        assert not sock.poll(2000), "a replayed request was answered"
    finally:
        ctx.destroy(linger=0)
    _, seen = execute(kc, "print('still fine')")
    assert stdout(seen) == "still fine\n"


def test_run_all_on_a_trace_uses_the_review_kernel(tmp_path: Path) -> None:
    """The reviewer's path: a trace names the review kernelspec, and Run All (nbclient, as
    JupyterLab would) gets the re-run outputs filtered."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    with ScriptedLLMServer([fence(AGENT_STEP), fence("final_answer(1)")]) as llm:
        result = make_agent(llm, tmp_path, runtime).run("hostile outputs")
    assert result.status == "answered", result.reason
    nb = nbformat.read(result.trace_path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == KERNEL
    recorded = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("application/javascript" in o.get("data", {}) for o in recorded)  # the record
    NotebookClient(nb, timeout=120, startup_timeout=60, allow_errors=True).execute()
    rerun = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    bundles = [o["data"] for o in rerun if "data" in o]
    assert any("<table" in d.get("text/html", "") for d in bundles)
    for data in bundles:
        assert not active_in_bundle(data), data


def test_repository_review_kernelspec_matches_the_installer() -> None:
    shipped = json.loads((REPO / "kernelspec" / KERNEL / "kernel.json").read_text())
    assert shipped == kernel_json("python", REVIEW_DISPLAY_NAME, review=True)
    assert shipped["argv"][-1] == "--review"
