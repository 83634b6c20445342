"""The warm kernel pool, with real sandboxed kernels: fresh kernels, replacement, cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeact_kernel import Agent, KernelSession, SandboxUnavailable
from codeact_kernel.kernels.pool import KernelPool, PooledKernelManager
from codeact_kernel.sandbox.config import SandboxConfig

from ..scripted_llm import ScriptedLLMServer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def pool(runtime_dir: Path) -> Iterator[KernelPool]:
    with KernelPool(size=1, runtime_dir=str(runtime_dir), check_interval=0.2) as p:
        yield p


def host_pid(session: KernelSession) -> int:
    assert isinstance(session.manager, PooledKernelManager)
    kernel = session.manager.kernel  # the started local manager the pool handed out
    assert kernel is not None and kernel.process is not None
    return int(kernel.process.pid)


def processes_under(folder: Path) -> list[int]:
    """Pids of processes whose command line names ``folder`` (bwrap, ipykernel)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(int(entry.name))
    return found


def cgroups_named(names: set[str]) -> list[Path]:
    return [path for path in SandboxConfig().stale_cgroups() if path.name in names]


def wait_until(condition: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_pooled_kernel_is_fresh(pool: KernelPool) -> None:
    first = pool.acquire()
    try:
        assert first.execute("secret = 'from the first session'\nsecret").ok
        first_pid, first_dir = host_pid(first), first.session_dir
    finally:
        first.shutdown()
    assert first_dir is not None and not first_dir.exists()
    with pool.acquire() as second:
        result = second.execute("secret")
        assert result.error is not None and result.error.ename == "NameError"
        assert host_pid(second) != first_pid
        assert second.session_dir != first_dir
        assert second.execute("print(21 * 2)").stdout == "42\n"  # no output is lost


def test_concurrent_takers_never_share_a_kernel(pool: KernelPool) -> None:
    sessions = [pool.session() for _ in range(3)]  # more takers than the pool holds
    threads = [threading.Thread(target=s.start) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert len({host_pid(s) for s in sessions}) == 3
        assert len({s.session_dir for s in sessions}) == 3
    finally:
        for session in sessions:
            session.shutdown()


def test_a_dead_pooled_kernel_is_replaced(pool: KernelPool, runtime_dir: Path) -> None:
    assert pool.wait_filled(60)
    victims = processes_under(runtime_dir)
    assert victims
    for pid in victims:
        # Killing bwrap takes its sandbox's processes with it (--die-with-parent), so a
        # later pid in the list may be gone already.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: pool.replaced >= 1)
    with pool.acquire() as session:
        assert host_pid(session) not in victims
        assert session.execute("1 + 1").outputs[0]["data"]["text/plain"] == "2"


def test_a_kernel_that_dies_just_before_it_is_taken_is_skipped(runtime_dir: Path) -> None:
    # A slow liveness check, so that acquire meets the dead kernel itself.
    with KernelPool(size=2, runtime_dir=str(runtime_dir), check_interval=60) as pool:
        assert pool.wait_filled(60)
        sessions = [d for d in runtime_dir.iterdir()]
        for pid in processes_under(sessions[0]):
            with contextlib.suppress(ProcessLookupError):  # gone with bwrap already
                os.kill(pid, signal.SIGKILL)
        with pool.acquire() as first, pool.acquire() as second:
            assert first.execute("1").ok and second.execute("2").ok
            assert sessions[0] not in (first.session_dir, second.session_dir)


def test_close_leaves_no_process_folder_or_cgroup(runtime_dir: Path) -> None:
    pool = KernelPool(size=2, runtime_dir=str(runtime_dir))
    assert pool.wait_filled(60)
    in_use = pool.acquire()
    names = {d.name for d in runtime_dir.iterdir()}
    assert len(names) >= 2
    pool.close()
    # A session already handed out keeps its kernel after the pool is closed.
    assert in_use.execute("x = 1\nx").ok
    in_use.shutdown()
    assert pool.wait_closed(30)  # its thread waited for the handed-out kernel
    assert processes_under(runtime_dir) == []
    assert list(runtime_dir.iterdir()) == []
    assert cgroups_named(names) == []
    with pytest.raises(Exception, match="closed"):
        pool.acquire()


def test_close_during_a_launch_leaves_no_session_folder(runtime_dir: Path) -> None:
    # The magic's pool refills after each take, and the user's shell can exit mid-refill:
    # the launch close() cancels must take its half-started kernel with it.
    pool = KernelPool(size=1, runtime_dir=str(runtime_dir)).start()
    assert wait_until(lambda: any(runtime_dir.iterdir()), 30)  # a launch is under way
    assert pool.ready == 0
    pool.close()
    assert pool.wait_closed(30)
    assert list(runtime_dir.iterdir()) == []
    assert processes_under(runtime_dir) == []


def test_a_broken_sandbox_fails_acquire_with_the_fix(runtime_dir: Path) -> None:
    sandbox = SandboxConfig(bwrap_path="/nonexistent/bwrap")
    with KernelPool(size=1, runtime_dir=str(runtime_dir), sandbox=sandbox) as pool:
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
            pool.acquire()
        assert isinstance(pool.last_error, SandboxUnavailable)


def greet(name: str) -> str:
    """Say hello.

    Args:
        name: Who to greet.
    """
    return f"hello {name}"


def test_the_agent_runs_on_pooled_kernels(pool: KernelPool, llm: ScriptedLLMServer,
                                          tmp_path: Path) -> None:
    agent = Agent(model="openai/scripted", api_base=llm.api_base, tools=[greet], pool=pool,
                  trace_path=str(tmp_path / "run.ipynb"))
    llm.enqueue("```python\nleft_over = greet('pool')\nfinal_answer(left_over)\n```",
                "```python\nfinal_answer('left_over' in globals())\n```")
    assert isinstance(agent.session.manager, PooledKernelManager)
    first = agent.run("Greet the pool.")
    assert first.status == "answered" and first.answer == "hello pool"
    assert not agent.session.manager.has_kernel  # the run shut its kernel down
    second = agent.run("Is anything left over?")
    assert second.status == "answered" and second.answer is False  # a fresh kernel
