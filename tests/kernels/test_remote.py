"""Kernels the agent did not start: a real jupyter-kernel-gateway on 127.0.0.1, and
kernels attached by connection file (one started by jupyter_client, one the way the
container image starts it). Only the LLM is scripted."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest
from jupyter_client.manager import KernelManager
from jupyter_core.utils import run_sync
from traitlets.config import Config

from codeact_kernel import Agent
from codeact_kernel.agent.handoff import push_variables
from codeact_kernel.errors import CodeActError, GatewayError, KernelLost, KernelStartError
from codeact_kernel.kernels.connection import ConnectionFileKernelManager, ConnectionFileSession
from codeact_kernel.kernels.factory import make_session
from codeact_kernel.kernels.gateway import GatewayKernelManager, GatewaySession
from codeact_kernel.kernels.local import SandboxKernelManager
from codeact_kernel.kernels.pool import KernelPool, PooledKernelManager
from codeact_kernel.kernels.session import KernelSession
from codeact_kernel.sandbox.kernelspec import install_kernelspec
from codeact_kernel.terminal.demo import demo_tools

from ..scripted_llm import ScriptedLLMServer

TOKEN_VAR = "CODEACT_TEST_GATEWAY_TOKEN"


def fence(code: str) -> str:
    return f"Let me do that.\n```python\n{code}\n```"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(self, root: Path, *args: str) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        # The gateway also offers the sandboxed kernelspec (the TCP<->ipc bridge launcher).
        install_kernelspec(prefix=str(root / "prefix"))
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
               "JUPYTER_PATH": str(root / "prefix" / "share" / "jupyter")}
        self.log = open(root / "gateway.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
             f"--KernelGatewayApp.port={self.port}", "--KernelGatewayApp.port_retries=0",
             f"--KernelGatewayApp.auth_token={self.token}",
             "--JupyterWebsocketPersonality.list_kernels=True", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        # jupyter_server's imports alone took over 30 s on a loaded 2-core machine.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.rest("GET", "/api/kernels")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()  # the fixture will not get to tear it down
        raise RuntimeError("the kernel gateway did not come up:\n"
                           + (root / "gateway.log").read_text()[-2000:])

    def rest(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gateway"))
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def token(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_VAR, gateway.token)
    return gateway.token


@pytest.fixture
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


def remote_agent(llm: ScriptedLLMServer, tmp_path: Path, config: Config, **kw: Any) -> Agent:
    config.KernelSession.runtime_dir = str(tmp_path / "rt")
    agent = Agent(model="openai/scripted", api_base=llm.api_base, tools=demo_tools(),
                  trace_path=str(tmp_path / "trace.ipynb"), config=config, **kw)
    agent.llm.max_retries = 1
    return agent


def gateway_config(gateway: Gateway) -> Config:
    config = Config()
    config.GatewaySession.url = gateway.url
    config.GatewaySession.token_env = TOKEN_VAR
    return config


def load_trace(path: str) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


TOOLS_TASK = (
    "pops = {c: get_population(c) for c in search_cities('France')}\n"
    "print(sum(pops.values()))"
)


# ---- Jupyter Kernel Gateway --------------------------------------------------------------


def test_gateway_agent_with_host_tools_timeout_and_trace(
    gateway: Gateway, token: str, llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    llm.enqueue(
        fence(TOOLS_TASK),
        fence("total = sum(pops.values())\nprint('x' * 30000)\nimport time\ntime.sleep(60)"),
        # The cut output reaches the gateway's kernel with no shared folder.
        fence("final_answer({'total': total, 'cities': len(pops), "
              "'kept': 'x' * 30000 in _outputs[2]})"),
    )
    agent = remote_agent(llm, tmp_path, gateway_config(gateway), step_timeout=2)
    started = time.monotonic()
    result = agent.run("Total population of the French cities")
    assert time.monotonic() - started < 40
    assert isinstance(agent.session.manager, GatewayKernelManager)
    assert result.status == "answered", result.reason
    assert result.answer == {"total": 4_350_139, "cities": 5, "kept": True}
    assert result.steps[1].recovery == "interrupted" and not result.steps[1].state_lost
    assert "kept its variables" in result.steps[1].reason
    nb = load_trace(result.trace_path)
    assert "gateway kernel: python3" in nb.metadata["codeact"]["sandbox"][0]
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source == TOOLS_TASK]
    calls = cells[0].metadata["codeact"]["tool_calls"]
    assert [c["name"] for c in calls] == ["search_cities"] + ["get_population"] * 5
    assert "4350139" in cells[0].outputs[0]["text"]
    assert gateway.rest("GET", "/api/kernels") == []  # deleted at close


def test_sandboxed_kernelspec_behind_the_gateway(
    gateway: Gateway, token: str, llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    llm.enqueue(
        fence("import os, time\nbefore = os.getuid()\ntime.sleep(60)"),
        fence("final_answer([before, get_population('Lyon')])"),
    )
    config = gateway_config(gateway)
    config.GatewaySession.kernel_name = "codeact-sandbox"
    config.Policy.authorized_imports = ["os"]
    result = remote_agent(llm, tmp_path, config, step_timeout=1).run("Who am I?")
    assert result.steps[0].recovery == "interrupted"  # REST interrupt, message mode, bridge
    assert result.status == "answered" and result.answer == [65534, 522_250], result.reason


def test_gateway_stuck_cell_is_restarted_through_rest(
    gateway: Gateway, token: str, llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    llm.enqueue(
        fence("kept = 1\nimport time\nwhile True:\n    try:\n        time.sleep(1)\n"
              "    except KeyboardInterrupt:\n        pass"),
        fence("final_answer([get_population('Paris'), 'kept' in globals()])"),
    )
    config = gateway_config(gateway)
    config.KernelSession.interrupt_grace = 1.0
    result = remote_agent(llm, tmp_path, config, step_timeout=1).run("Hang, then go on")
    assert len(result.steps) == 2, result.reason
    assert result.steps[0].recovery == "restarted" and result.steps[0].state_lost
    assert "ALL VARIABLES WERE LOST" in result.steps[0].reason
    # The startup code ran again in the restarted kernel: host tools still work.
    assert result.status == "answered" and result.answer == [2_102_650, False]


def test_gateway_kernel_deleted_under_us_is_replaced(
    gateway: Gateway, token: str, tmp_path: Path
) -> None:
    with GatewaySession(url=gateway.url, token_env=TOKEN_VAR,
                        runtime_dir=str(tmp_path / "rt")) as session:
        assert session.execute("x = 1").ok
        first = session.manager.kernel_id
        gateway.rest("DELETE", f"/api/kernels/{first}")
        started = time.monotonic()
        result = session.execute("print('x' in globals())", timeout=10)
        assert time.monotonic() - started < 15
        assert result.kernel_died and result.recovery == "restarted" and result.state_lost
        assert "shut down by someone else" in result.reason or "no longer" in result.reason
        assert session.manager.kernel_id != first
        again = session.execute("print('x' in globals())")
        assert again.ok and again.stdout == "False\n"


def test_notebook_variables_reach_a_gateway_kernel_inline(
    gateway: Gateway, token: str, tmp_path: Path
) -> None:
    # %%agent --in: a sandboxed kernel behind the gateway cannot read the host's folders.
    values = {"df": pd.DataFrame({"a": [1, 2]}), "arr": np.arange(3), "plain": {"k": [1]},
              "other": {1, 2}}
    with GatewaySession(url=gateway.url, token_env=TOKEN_VAR, kernel_name="codeact-sandbox",
                        runtime_dir=str(tmp_path / "rt")) as session:
        assert run_sync(push_variables)(session, values) == list(values)
        result = session.execute("print(int(df.a.sum()), arr.tolist(), plain, sorted(other))")
        assert result.stdout.strip() == "3 [0, 1, 2] {'k': [1]} [1, 2]", result.reason
        assert not (session.work_path / ".codeact" / "in").exists()


def test_gateway_kernel_death_is_noticed(gateway: Gateway, token: str, tmp_path: Path) -> None:
    with GatewaySession(url=gateway.url, token_env=TOKEN_VAR,
                        runtime_dir=str(tmp_path / "rt")) as session:
        result = session.execute("import os\nos._exit(1)", timeout=30)
        assert result.kernel_died and result.recovery == "restarted"
        assert "gateway reported the kernel" in result.reason
        assert session.execute("print(6 * 7)").stdout == "42\n"


def test_wrong_token_is_a_clear_error(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(TOKEN_VAR, "not-the-token")
    session = GatewaySession(url=gateway.url, token_env=TOKEN_VAR,
                             runtime_dir=str(tmp_path / "rt"))
    started = time.monotonic()
    with pytest.raises(GatewayError, match=rf"refused .*HTTP 401.*\${TOKEN_VAR}"):
        session.start()
    assert time.monotonic() - started < 5
    assert session.session_dir is None  # cleaned up
    no_token = GatewaySession(url=gateway.url, runtime_dir=str(tmp_path / "rt"))
    with pytest.raises(GatewayError, match="no token was sent"):
        no_token.start()
    monkeypatch.delenv(TOKEN_VAR)
    with pytest.raises(GatewayError, match=f"{TOKEN_VAR} is not set"):
        GatewaySession(url=gateway.url, token_env=TOKEN_VAR,
                       runtime_dir=str(tmp_path / "rt")).start()


def test_unreachable_gateway_fails_fast(tmp_path: Path) -> None:
    session = GatewaySession(url=f"http://127.0.0.1:{free_port()}",
                             runtime_dir=str(tmp_path / "rt"))
    started = time.monotonic()
    with pytest.raises(GatewayError, match="cannot reach the Jupyter gateway"):
        session.start()
    assert time.monotonic() - started < 5
    with pytest.raises(GatewayError, match="must start with http"):
        GatewaySession(url="127.0.0.1:8888", runtime_dir=str(tmp_path / "rt")).start()


def test_unknown_kernel_name_lists_the_gateways(
    gateway: Gateway, token: str, tmp_path: Path
) -> None:
    session = GatewaySession(url=gateway.url, token_env=TOKEN_VAR, kernel_name="nope",
                             runtime_dir=str(tmp_path / "rt"))
    with pytest.raises(GatewayError, match=r"no kernel named 'nope'; it has: .*python3"):
        session.start()


# ---- a kernel attached by its connection file --------------------------------------------


def test_agent_on_a_kernel_attached_by_connection_file(
    outside_kernel: KernelManager, llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    llm.enqueue(
        fence(TOOLS_TASK),
        fence("import time\ntime.sleep(60)"),
        fence("final_answer(sum(pops.values()))"),
    )
    config = Config()
    config.ConnectionFileSession.connection_file = outside_kernel.connection_file
    agent = remote_agent(llm, tmp_path, config, step_timeout=1)
    result = agent.run("Total population of the French cities")
    assert isinstance(agent.session.manager, ConnectionFileKernelManager)
    assert result.status == "answered" and result.answer == 4_350_139, result.reason
    assert result.steps[1].recovery == "interrupted"
    nb = load_trace(result.trace_path)
    assert "attached kernel: connection file" in nb.metadata["codeact"]["sandbox"][0]
    # Not ours: left running, with the session's variables, after the agent closed.
    assert outside_kernel.is_alive()
    client = outside_kernel.client()
    client.start_channels()
    try:
        reply = client.execute_interactive("print(sum(pops.values()))", timeout=10)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()


def test_configured_remote_kernel_wins_over_a_warm_pool(
    outside_kernel: KernelManager, tmp_path: Path
) -> None:
    # The pool serves local sandboxes; it once took precedence over the configuration.
    config = Config()
    config.ConnectionFileSession.connection_file = outside_kernel.connection_file
    pool = KernelPool(size=1, runtime_dir=str(tmp_path / "pool"))  # not started: no kernels
    agent = Agent(model="openai/scripted", pool=pool, config=config)
    assert isinstance(agent.session.manager, ConnectionFileKernelManager)
    local = Agent(model="openai/scripted", pool=pool)
    manager = local.session.manager
    assert isinstance(manager, PooledKernelManager) and manager.pool is pool
    pool.close()


def test_stuck_cell_in_an_attached_kernel_is_reported_not_killed(
    outside_kernel: KernelManager, tmp_path: Path
) -> None:
    session = ConnectionFileSession(connection_file=outside_kernel.connection_file,
                                    runtime_dir=str(tmp_path / "rt"), interrupt_grace=1)
    with session:
        started = time.monotonic()
        with pytest.raises(KernelLost, match="cannot be restarted from here"):
            session.execute("import time\nwhile True:\n    try:\n        time.sleep(1)\n"
                            "    except KeyboardInterrupt:\n        pass", timeout=1)
        assert time.monotonic() - started < 10
    assert outside_kernel.is_alive()


def _supervise(argv: list[str], stop: threading.Event, log: Path) -> None:
    """A restart policy: relaunch the kernel whenever it exits (as `--restart always`)."""
    with open(log, "ab") as out:
        while not stop.is_set():
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            while proc.poll() is None and not stop.is_set():
                time.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_attached_kernel_that_dies_comes_back_by_its_supervisor(tmp_path: Path) -> None:
    conn = tmp_path / "conn"
    conn.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "--transport=ipc",
            f"--ip={conn}/kernel", "-f", str(conn / "kernel.json")]
    stop = threading.Event()
    thread = threading.Thread(target=_supervise, args=(argv, stop, tmp_path / "k.log"))
    thread.start()
    try:
        session = ConnectionFileSession(connection_file=str(conn / "kernel.json"),
                                        runtime_dir=str(tmp_path / "rt"), heartbeat_grace=2)
        with session:
            assert session.execute("x = 1").ok
            result = session.execute("import os\nos._exit(3)", timeout=30)
            assert result.kernel_died and result.recovery == "restarted" and result.state_lost
            assert "relaunched by whatever supervises it" in result.reason
            assert session.execute("print('x' in globals())").stdout == "False\n"
            stop.set()  # no supervisor now: the next death is final
            thread.join()
            session.manager.restart_wait = 2
            with pytest.raises(KernelLost, match="nothing brought it back within 2s"):
                session.execute("import os\nos._exit(3)", timeout=30)
    finally:
        stop.set()
        thread.join()


def test_connection_file_problems_are_clear(tmp_path: Path) -> None:
    missing = ConnectionFileSession(connection_file=str(tmp_path / "none.json"),
                                    runtime_dir=str(tmp_path / "rt"), startup_timeout=0.5)
    with pytest.raises(KernelStartError, match="does not exist"):
        missing.start()
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"key": "k", "transport": "ipc", "ip": str(tmp_path / "gone"),
                                 "shell_port": 1, "iopub_port": 2, "stdin_port": 3,
                                 "control_port": 4, "hb_port": 5,
                                 "signature_scheme": "hmac-sha256"}))
    started = time.monotonic()
    with pytest.raises(KernelStartError, match="did not answer within 1s"):
        ConnectionFileSession(connection_file=str(stale), runtime_dir=str(tmp_path / "rt"),
                              startup_timeout=1).start()
    assert time.monotonic() - started < 10


# ---- choosing the session ----------------------------------------------------------------


def test_configuration_selects_the_kernel(tmp_path: Path) -> None:
    from codeact_kernel.terminal.cli import RunApp

    def session_for(*flags: str) -> KernelSession:
        command = RunApp()
        command.initialize(["task", *flags])
        return make_session(Agent(parent=command))

    assert isinstance(session_for().manager, SandboxKernelManager)
    attached_session = session_for("--connection-file", "/srv/k/kernel.json")
    attached = attached_session.manager
    assert isinstance(attached, ConnectionFileKernelManager)
    assert attached.connection_file == "/srv/k/kernel.json"
    assert attached_session.tool_transport == "stdin"
    gw = session_for("--gateway-url", "http://gw:8888", "--gateway-token-env", "GW_TOKEN",
                     "--kernel-name", "python3-sandbox").manager
    assert isinstance(gw, GatewayKernelManager)
    assert (gw.url, gw.token_env, gw.kernel_name) == ("http://gw:8888", "GW_TOKEN",
                                                      "python3-sandbox")
    with pytest.raises(CodeActError, match="choose one"):
        session_for("--connection-file", "k.json", "--gateway-url", "http://gw")


# ---- the container image -----------------------------------------------------------------

CONTAINERFILE = Path(__file__).parents[2] / "kernelspec" / "Containerfile"


def parse_containerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(args.split())))
            pending = ""
    return instructions


def image_config() -> dict[str, Any]:
    import shlex

    config: dict[str, Any] = {"ENV": {}, "RUN": []}
    for keyword, args in parse_containerfile(CONTAINERFILE):
        if keyword == "ENV":
            config["ENV"].update(item.split("=", 1) for item in shlex.split(args))
        elif keyword in ("ENTRYPOINT", "CMD"):
            config[keyword] = json.loads(args)  # exec form: no shell in between
        elif keyword == "RUN":
            config["RUN"].append(args)
        else:
            config[keyword] = args
    return config


def test_containerfile_runs_a_non_root_kernel_from_a_mounted_connection_file() -> None:
    image = image_config()
    assert image["FROM"].startswith("python:3")
    uid, _, gid = image["USER"].partition(":")
    assert int(uid) >= 1000 and int(gid) >= 1000  # numeric, so --user checks need no passwd
    assert "EXPOSE" not in image  # nothing to publish: ipc sockets on the bound folder
    assert image["ENTRYPOINT"] == ["python", "-m", "ipykernel_launcher", "--transport=ipc"]
    assert image["CMD"] == ["--ip=/conn/kernel", "-f", "/conn/kernel.json"]
    assert image["WORKDIR"] == "/work"
    # With --read-only, everything the kernel writes must be under /tmp or /work.
    for key in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR"):
        assert image["ENV"][key].startswith("/tmp/")
    assert image["ENV"]["HOME"] == "/work"
    assert any("useradd --uid 10001" in run for run in image["RUN"])
    readme = (CONTAINERFILE.parent.parent / "README.md").read_text()
    section = readme[readme.index("## Containers and remote kernels"):]
    for flag in ("--network none", "--read-only", "--tmpfs /tmp", "--memory", "--pids-limit",
                 "--cap-drop ALL", "--security-opt no-new-privileges", "--user",
                 "docker build", "--connection-file", "--gateway-url", "--gateway-token-env"):
        assert flag in section, flag


def emulated_container(conn: Path, image: dict[str, Any]) -> list[str]:
    """`docker run --network none --read-only --tmpfs /tmp --tmpfs /work --cap-drop ALL
    --security-opt no-new-privileges --user UID -v CONN:/conn`, with bubblewrap."""
    import shutil

    uid = image["USER"].split(":")[0]
    python = Path(sys.executable)
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib64"):  # /bin -> usr/bin on the image's Debian
        target = Path("/") / name
        if target.is_symlink():
            argv += ["--symlink", os.readlink(target), str(target)]
        elif target.exists():
            argv += ["--ro-bind", str(target), str(target)]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/work"]
    # The test's Python stands in for the image's: bind it where it lives.
    for path in {str(python.parent.parent), str(Path(sys.base_prefix))}:
        for parent in reversed(Path(path).parents[:-1]):
            argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", path, path]
    argv += ["--bind", str(conn), "/conn", "--remount-ro", "/",  # = --read-only
             "--chdir", image["WORKDIR"], "--clearenv"]
    for key, value in image["ENV"].items():
        argv += ["--setenv", key, value]
    argv += ["--setenv", "PATH", f"{python.parent}:/usr/bin:/bin", "--cap-drop", "ALL",
             "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
             "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
             "--"]
    return [*argv, str(python), *image["ENTRYPOINT"][1:], *image["CMD"]]


def test_kernel_started_like_the_container_is_attached(
    tmp_path: Path, llm: ScriptedLLMServer
) -> None:
    conn = tmp_path / "conn"
    conn.mkdir(mode=0o777)
    conn.chmod(0o777)  # the kernel's uid writes its sockets and connection file here
    log = open(tmp_path / "kernel.log", "wb")  # closed below
    proc = subprocess.Popen(emulated_container(conn, image_config()), stdout=log,
                            stderr=subprocess.STDOUT)
    llm.enqueue(
        fence("import os, socket\n"
              "probe = socket.socket()\n"
              "probe.settimeout(2)\n"
              "try:\n    probe.connect(('10.0.0.1', 80))\n    net = 'up'\n"
              "except OSError as exc:\n    net = type(exc).__name__\n"
              "with open('/work/note.txt', 'w') as fh:\n    fh.write('ok')\n"
              "final_answer({'uid': os.getuid(), 'net': net, 'cwd': os.getcwd(),\n"
              "              'paris': get_population('Paris')})"),
    )
    config = Config()
    config.ConnectionFileSession.connection_file = str(conn / "kernel.json")
    try:
        agent = remote_agent(llm, tmp_path, config)
        agent.policy.authorized_imports = ["os", "socket"]
        result = agent.run("Describe where you run")
        assert result.status == "answered", [(s.status, s.reason, s.outputs) for s in result.steps]
        assert result.answer == {"uid": 10001, "net": "OSError", "cwd": "/work",
                                 "paris": 2_102_650}
        assert agent.session.isolation[-1].endswith("/work")
        # The connection file says /conn/kernel; the sockets were found beside it.
        assert json.loads((conn / "kernel.json").read_text())["ip"] == "/conn/kernel"
    finally:
        proc.kill()
        proc.wait()
        log.close()
