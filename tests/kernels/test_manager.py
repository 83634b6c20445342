"""Kernels are composed in: KernelSession executes, the manager passed in provides the
kernel. A session on each backend, built by passing its manager, with real kernels (a
real jupyter-kernel-gateway for the gateway); a backend written here, in one class,
that the session and the agent run on unchanged; and the seams themselves."""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import pkgutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_core.utils import run_sync
from traitlets.config import Config, Configurable

import codeact_kernel
from codeact_kernel import Agent, ConnectionFileSession, GatewaySession, KernelSession
from codeact_kernel.agent.managed import spawn
from codeact_kernel.kernels.client import BoundedKernelClient
from codeact_kernel.kernels.connection import ConnectionFileKernelManager
from codeact_kernel.kernels.factory import configured_manager, make_session
from codeact_kernel.kernels.gateway import GatewayKernelManager
from codeact_kernel.kernels.local import SandboxKernelManager
from codeact_kernel.kernels.manager import KernelChannels, SessionKernelManager, wait_until_ready
from codeact_kernel.kernels.pool import KernelPool, PooledKernelManager
from codeact_kernel.sandbox.config import SandboxConfig
from codeact_kernel.terminal.demo import demo_tools

from ..helpers import fence
from ..scripted_llm import ScriptedLLMServer
from ..security.forge import FORGE_PRELUDE
from .test_remote import TOKEN_VAR, Gateway

pytestmark = pytest.mark.timeout(240)
KERNELS = Path(codeact_kernel.__file__).parent / "kernels"


class PlainKernelManager(SessionKernelManager):
    """A new backend, in one class: an unsandboxed local ipykernel from the python3
    kernelspec. Only the abstract methods; every capability keeps its default."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.km: AsyncKernelManager | None = None
        self.kc: Any = None

    @property
    def has_kernel(self) -> bool:
        return self.km is not None

    @property
    def channels(self) -> KernelChannels:
        assert self.kc is not None
        channels: KernelChannels = self.kc
        return channels

    async def start_kernel(self, *, runtime_dir: Path, work_dir: str, timeout: float) -> None:
        folder = self.open_folders(runtime_dir, work_dir)
        self.km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                     ip=str(folder / "k"),
                                     connection_file=str(folder / "kernel.json"))
        await self.km.start_kernel(cwd=str(self.work_path))
        self.kc = self.km.client()
        self.kc.start_channels()
        await wait_until_ready(self.kc, timeout)
        self.isolation = ["none: a plain local ipykernel"]

    async def is_alive(self) -> bool:
        return self.km is not None and await self.km.is_alive()

    async def interrupt_kernel(self) -> None:
        assert self.km is not None
        await self.km.interrupt_kernel()

    async def restart_kernel(self, *, timeout: float) -> None:
        assert self.km is not None
        await self.km.restart_kernel(now=True)
        await wait_until_ready(self.kc, timeout)

    async def shutdown_kernel(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        km, self.km = self.km, None
        if km is not None and km.has_kernel:
            await km.shutdown_kernel(now=True)
        self.remove_folders()


# ---- a new backend is one class -------------------------------------------------------------


def test_a_backend_written_in_one_class_runs_a_session(runtime_dir: Path) -> None:
    manager = PlainKernelManager()
    session = KernelSession(manager=manager, runtime_dir=str(runtime_dir), timeout=2,
                            startup_code=["HELPER = 'ready'"])
    with session:
        assert session.tool_transport == "stdin"  # the default capability: no shared socket
        assert session.kernel_work_dir == str(manager.work_path)  # asked of the kernel
        assert session.isolation[0] == "none: a plain local ipykernel"
        assert session.execute("x = 6 * 7\nprint(x, HELPER)").stdout == "42 ready\n"
        started = time.monotonic()
        stuck = session.execute("import time\ntime.sleep(60)")
        assert stuck.recovery == "interrupted" and time.monotonic() - started < 30
        assert session.execute("print(x)").stdout == "42\n"  # the interrupt kept the state
        died = session.execute("import os\nos._exit(1)", timeout=30)
        assert died.kernel_died and died.recovery == "restarted" and died.state_lost
        assert session.restarts == 1
        again = session.execute("print('x' in globals(), HELPER)")
        assert again.stdout == "False ready\n"  # fresh kernel, startup code run again
        folder = session.session_dir
        assert folder is not None and folder.is_dir()
    assert not folder.exists() and not manager.has_kernel
    assert list(runtime_dir.iterdir()) == []


def test_the_agent_runs_on_a_backend_written_here(
    runtime_dir: Path, tmp_path: Path, llm: ScriptedLLMServer
) -> None:
    llm.enqueue(fence("pops = {c: get_population(c) for c in search_cities('France')}\n"
                      "print(sum(pops.values()))"),
                fence("final_answer(sum(pops.values()))"))
    session = KernelSession(manager=PlainKernelManager(), runtime_dir=str(runtime_dir))
    agent = Agent(model="openai/scripted", api_base=llm.api_base, tools=demo_tools(),
                  session=session, trace_path=str(tmp_path / "trace.ipynb"))
    agent.llm.max_retries = 1
    result = agent.run("Total population of the French cities")
    assert result.status == "answered" and result.answer == 4_350_139, result.reason
    assert [c["name"] for c in result.steps[0].tool_calls] == (
        ["search_cities"] + ["get_population"] * 5)  # host tools over the stdin channel
    assert list(runtime_dir.iterdir()) == []


def test_a_backend_missing_a_method_cannot_be_built() -> None:
    class Half(SessionKernelManager):
        async def is_alive(self) -> bool:
            return True

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]


# ---- a session for each backend, by passing its manager ------------------------------------

CAP = 256 * 1024


def assert_bounded(session: KernelSession, over_zmq: bool) -> None:
    """The host's budgets hold on this backend: the session's output budget always, and
    the client's socket caps where the channels are ZMQ sockets."""
    import zmq

    # Counted in messages on every backend (a gateway rate-limits bytes itself).
    session.max_output_messages = 50
    flood = session.execute("for i in range(300):\n    print(i, flush=True)")
    # Past the cap the rest is dropped; as much again is a flood, which is interrupted.
    assert flood.output_dropped is not None and flood.output_dropped["messages"] >= 50
    assert flood.stdout == "".join(f"{i}\n" for i in range(50))
    assert "output truncated" in flood.reason and "max_output_messages" in flood.reason
    assert session.execute("print('next')").stdout == "next\n"  # the budget is per execute
    if over_zmq:
        session.max_output_bytes = CAP
        flood = session.execute("print('x' * 8_000_000)\nprint('after')")
        assert flood.output_dropped is not None and flood.output_dropped["bytes"] > 7_000_000
        assert len(flood.stdout) <= CAP and flood.stdout.startswith("xxx")
        assert isinstance(session.kc, BoundedKernelClient)
        for name in ("iopub", "shell", "stdin"):
            socket = getattr(session.kc, f"{name}_channel").socket
            assert socket.getsockopt(zmq.MAXMSGSIZE) == session.kc.max_message_bytes, name
            assert socket.getsockopt(zmq.RCVHWM) == session.kc.receive_hwm, name


def test_a_session_on_the_local_sandbox_manager(runtime_dir: Path) -> None:
    manager = SandboxKernelManager(sandbox=SandboxConfig(pids_limit=128))
    with KernelSession(manager=manager, runtime_dir=str(runtime_dir)) as session:
        assert session.execute("print(6 * 7)").stdout == "42\n"
        assert session.tool_transport == "ipc" and manager.shares_work_folder
        assert manager.plan is not None and manager.process is not None
        assert any("bubblewrap" in line for line in session.isolation)
        assert session.kernel_work_dir == str(session.work_path)
        assert_bounded(session, over_zmq=True)
    assert manager.process is None and list(runtime_dir.iterdir()) == []


def test_a_session_on_the_connection_file_manager(
    outside_kernel: KernelManager, runtime_dir: Path
) -> None:
    manager = ConnectionFileKernelManager(connection_file=outside_kernel.connection_file)
    with KernelSession(manager=manager, runtime_dir=str(runtime_dir)) as session:
        assert session.execute("left = 6 * 7\nprint(left)").stdout == "42\n"
        assert session.tool_transport == "stdin" and not manager.shares_work_folder
        assert session.isolation[0].startswith("attached kernel: connection file")
        assert_bounded(session, over_zmq=True)
    assert outside_kernel.is_alive()  # not ours: left running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # Without the server's iopub rate limit, which would drop a flood before the host
    # sees it: the host's own guards are what is tested.
    gw = Gateway(tmp_path_factory.mktemp("gateway"),
                 "--ZMQChannelsWebsocketConnection.limit_rate=False")
    try:
        yield gw
    finally:
        gw.stop()


def test_a_session_on_the_gateway_manager(
    gateway: Gateway, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VAR, gateway.token)
    manager = GatewayKernelManager(url=gateway.url, token_env=TOKEN_VAR)
    with KernelSession(manager=manager, runtime_dir=str(runtime_dir)) as session:
        assert session.execute("print(6 * 7)").stdout == "42\n"
        assert session.tool_transport == "stdin"
        assert [k["id"] for k in gateway.rest("GET", "/api/kernels")] == [manager.kernel_id]
        assert_bounded(session, over_zmq=False)  # a websocket: the budget alone
    assert gateway.rest("GET", "/api/kernels") == []  # deleted at close


def test_a_gateway_message_over_the_size_limit_is_not_read(
    gateway: Gateway, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each websocket message is parsed whole before the budget sees it: tornado refuses
    # one over max_message_bytes instead, the kernel counts as lost and is restarted.
    monkeypatch.setenv(TOKEN_VAR, gateway.token)
    manager = GatewayKernelManager(url=gateway.url, token_env=TOKEN_VAR,
                                   max_message_bytes=4 * 1024 * 1024)
    with KernelSession(manager=manager, runtime_dir=str(runtime_dir), timeout=30) as session:
        big = session.execute("print('before', flush=True)\n"
                              "display({'text/plain': 'q' * 8_000_000}, raw=True)")
        assert big.kernel_died and big.recovery == "restarted", big.reason
        assert "GatewayKernelManager.max_message_bytes" in big.reason
        assert "before" in big.stdout
        assert session.execute("print('again')").stdout == "again\n"


# A kernel thread that writes 40 MB to iopub after its cell has ended, in 8 KB flushes.
FLOOD_AFTER_THE_CELL = """
import sys, threading
def _flood():
    chunk = 'x' * 8191 + '\\n'
    for _ in range(5_000):
        sys.stdout.write(chunk)
        sys.stdout.flush()
threading.Thread(target=_flood, daemon=True).start()
"""


def test_the_gateway_backlog_is_bounded_while_the_host_reads_nothing(
    gateway: Gateway, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between two steps the agent awaits its model on the same event loop: the websocket
    # is read on, and nothing consumes what the kernel sends. A kernel flooding iopub
    # then must not pile up in host memory.
    monkeypatch.setenv(TOKEN_VAR, gateway.token)
    bound = 2 * 1024 * 1024
    manager = GatewayKernelManager(url=gateway.url, token_env=TOKEN_VAR,
                                   max_backlog_bytes=bound)

    async def scenario() -> tuple[int, int, Any]:
        async with KernelSession(manager=manager, runtime_dir=str(runtime_dir)) as session:
            assert (await session.async_execute(FLOOD_AFTER_THE_CELL)).ok
            await asyncio.sleep(8)  # the model is thinking; the flood goes on
            iopub = manager._require().queues["iopub"]
            queued = count = 0
            while not iopub.empty():
                queued += len(json.dumps(iopub.get_nowait(), default=str))
                count += 1
            # Long enough for the session to look for losses while the cell runs.
            again = await session.async_execute("import time; time.sleep(0.5); print(6 * 7)")
            return queued, count, again

    queued, count, again = run_sync(scenario)()
    assert count > 0  # the flood did arrive
    # What waited unread is within the bound (plus one flush: the newest is kept whole).
    assert queued <= bound + 64 * 1024, (queued, count)
    assert again.ok and again.stdout == "42\n", again.reason
    # What was dropped meanwhile was stale output: it is not a loss of the next cell's.
    assert again.lost_channels == [], again.reason


def test_gateway_backlog_drops_are_reported_to_the_cell_that_lost_output(
    gateway: Gateway, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a bound below one message, each message the reader queues before the cell's
    # pump takes the last one drops it. The cell must say that its output was lost and
    # why, count it against its budget, and still end on its reply.
    monkeypatch.setenv(TOKEN_VAR, gateway.token)
    manager = GatewayKernelManager(url=gateway.url, token_env=TOKEN_VAR, max_backlog_bytes=1)
    with KernelSession(manager=manager, runtime_dir=str(runtime_dir)) as session:
        result = session.execute("for i in range(3000):\n    print(i, flush=True)", timeout=60)
        assert result.lost_channels == ["iopub"], (result.lost_channels, result.reason)
        assert "GatewayKernelManager.max_backlog_bytes" in result.reason
        assert not result.timed_out and result.duration < 30, result.reason
        assert result.stdout.count("\n") < 3000  # what was lost is not made up


def test_gateway_shell_replies_to_nothing_the_host_sent_are_not_kept(
    gateway: Gateway, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel holds the key: it signs 500 execute_replies of 8 KB to a request nobody
    # made. Nothing ever reads them, so they must not wait in the host.
    monkeypatch.setenv(TOKEN_VAR, gateway.token)
    manager = GatewayKernelManager(url=gateway.url, token_env=TOKEN_VAR)
    forge = FORGE_PRELUDE + (  # after the cell ended, when the host reads no shell
        "import threading, time\n"
        "_nobody = _k.session.pack(_k.session.msg_header('execute_request'))\n"
        "def _forge():\n"
        "    time.sleep(0.5)\n"
        "    for _ in range(500):\n"
        "        _send_raw('shell', 'execute_reply', b'{\"status\": \"ok\", \"pad\": \"'"
        " + b'x' * 8000 + b'\"}', _nobody)\n"
        "threading.Thread(target=_forge, daemon=True).start()\n"
    )

    async def scenario() -> tuple[int, Any]:
        async with KernelSession(manager=manager, runtime_dir=str(runtime_dir)) as session:
            assert (await session.async_execute(forge)).ok
            await asyncio.sleep(3)
            left = manager._require().queues["shell"].qsize()
            return left, await session.async_execute("print(6 * 7)")

    left, again = run_sync(scenario)()
    assert left == 0
    assert again.ok and again.stdout == "42\n", again.reason


def test_a_session_on_a_pooled_manager(runtime_dir: Path) -> None:
    with KernelPool(size=1, runtime_dir=str(runtime_dir)) as pool:
        assert pool.wait_filled(60)
        manager = pool.manager()
        session = KernelSession(manager=manager, startup_code=["HELPER = 1"])
        with session:
            assert manager.kernel is not None and manager.kernel.process is not None
            assert session.execute("print(HELPER + 41)").stdout == "42\n"
            assert session.tool_transport == "ipc" and session.session_dir is not None
            assert session.session_dir.parent == runtime_dir  # the pool's folders
            assert_bounded(session, over_zmq=True)
        assert manager.kernel is None and not manager.has_kernel


# ---- the names and config kept from before managers were passed in ---------------------------


def test_old_names_build_sessions_on_their_manager() -> None:
    gw = GatewaySession(url="http://gw:8888", token_env="T", timeout=5)
    assert type(gw) is KernelSession and gw.timeout == 5
    assert isinstance(gw.manager, GatewayKernelManager)
    assert (gw.manager.url, gw.manager.token_env) == ("http://gw:8888", "T")
    attached = ConnectionFileSession(connection_file="k.json", interrupt_grace=1)
    assert isinstance(attached.manager, ConnectionFileKernelManager)
    assert attached.manager.connection_file == "k.json" and attached.interrupt_grace == 1
    local = KernelSession(sandbox=SandboxConfig(memory_limit=2**30), kernel_python="/p/py")
    assert isinstance(local.manager, SandboxKernelManager)
    assert local.manager.sandbox.memory_limit == 2**30 and local.manager.kernel_python == "/p/py"


def test_construction_mistakes_name_the_fix() -> None:
    with pytest.raises(TypeError, match="configure the manager itself"):
        KernelSession(manager=PlainKernelManager(), sandbox=SandboxConfig())
    with pytest.raises(TypeError, match=r"unknown keyword nope: KernelSession takes .*timeout"):
        KernelSession(nope=1)
    with pytest.raises(TypeError, match=r"GatewayKernelManager takes .*token_env"):
        GatewaySession(url="http://gw", sandbox=SandboxConfig())  # not the gateway's


def test_config_sections_of_the_old_names_reach_the_managers() -> None:
    config = Config()
    config.GatewaySession.url = "http://old:1"
    config.GatewaySession.kernel_name = "py"
    config.KernelSession.timeout = 7.0
    session = make_session(Configurable(config=config))
    assert isinstance(session.manager, GatewayKernelManager) and session.timeout == 7.0
    assert (session.manager.url, session.manager.kernel_name) == ("http://old:1", "py")
    config.GatewayKernelManager.url = "http://new:2"  # the class's own section wins
    assert configured_manager(Configurable(config=config)).url == "http://new:2"  # type: ignore[attr-defined]
    attached = Config()
    attached.ConnectionFileSession.restart_wait = 3.0
    attached.ConnectionFileSession.connection_file = "k.json"
    manager = configured_manager(Configurable(config=attached))
    assert isinstance(manager, ConnectionFileKernelManager) and manager.restart_wait == 3.0
    moved = Config()
    moved.KernelSession.kernel_python = "/old/python"
    with pytest.warns(DeprecationWarning, match="SandboxKernelManager.kernel_python"):
        assert KernelSession(config=moved).manager.kernel_python == "/old/python"  # type: ignore[attr-defined]


def test_the_pool_serves_what_the_manager_says_it_can(tmp_path: Path) -> None:
    pool = KernelPool(size=1, runtime_dir=str(tmp_path))  # not started: no kernels
    try:
        local = make_session(pool=pool)
        assert isinstance(local.manager, PooledKernelManager) and local.manager.pool is pool
        config = Config()
        config.GatewaySession.url = "http://gw:8888"
        remote = make_session(Configurable(config=config), pool=pool)
        assert isinstance(remote.manager, GatewayKernelManager)  # not poolable: config wins
    finally:
        pool.close()


def test_a_sub_agent_gets_a_fresh_manager_of_the_same_kind() -> None:
    gateway = Agent(session=KernelSession(manager=GatewayKernelManager(url="http://gw:1")))
    child = spawn(gateway).session.manager
    assert isinstance(child, GatewayKernelManager) and child.url == "http://gw:1"
    assert child is not gateway.session.manager
    sandbox = SandboxConfig(memory_limit=3 * 2**30)
    local = Agent(session=KernelSession(sandbox=sandbox))
    twin = spawn(local).session.manager
    assert isinstance(twin, SandboxKernelManager) and twin.sandbox is not sandbox
    assert twin.sandbox.memory_limit == 3 * 2**30


# ---- the seams themselves ---------------------------------------------------------------------


def test_no_module_subclasses_kernel_session() -> None:
    for module in pkgutil.walk_packages(codeact_kernel.__path__, "codeact_kernel."):
        if not module.name.startswith("codeact_kernel.kernel_side."):  # the kernel's code
            importlib.import_module(module.name)
    assert KernelSession.__subclasses__() == []


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_backends_do_not_import_each_other() -> None:
    backends = {"local", "connection", "gateway", "pool"}
    for name in backends:
        others = {f".{other}" for other in backends - {name, "local"}}
        assert not imported_modules(KERNELS / f"{name}.py") & others, name
    assert not imported_modules(KERNELS / "session.py") & {".connection", ".gateway", ".pool"}
    assert {".connection", ".gateway", ".local"} <= imported_modules(KERNELS / "factory.py")
