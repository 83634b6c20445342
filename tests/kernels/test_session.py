"""KernelSession against real sandboxed kernels: outputs, state, limits, recovery, cleanup.

No timing thresholds beyond loose sanity bounds: the machines running this
are small and shared, so a bound here only catches "hung", never "slow".
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from codeact_kernel import (
    ExecutionResult,
    KernelSession,
    KernelStartError,
    SandboxConfig,
    SessionClosed,
)

pytestmark = pytest.mark.timeout(180)

MIB = 1024**2
# Loose: only proves that nothing hung. Restarts on a loaded 2-core box take seconds.
HANG_BOUND = 30.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    """One kernel for every test that sets up its own state (starting kernels is CPU-bound)."""
    runtime = tmp_path_factory.mktemp("runtime")
    # A generous grace: on a loaded box an interrupted cell may need a while to
    # unwind, and a restart there would be a false failure of the interrupt test.
    with KernelSession(runtime_dir=str(runtime), timeout=60, interrupt_grace=6) as session:
        yield session


def run_ok(session: KernelSession, code: str, **kwargs: Any) -> ExecutionResult:
    result = session.execute(textwrap.dedent(code), **kwargs)
    assert result.ok, f"{result.reason}\n{result.stdout}\n{result.stderr}"
    return result


def text_plain(result: ExecutionResult) -> str:
    data = [o.data for o in result.outputs if o.output_type == "execute_result"]
    assert data, result.outputs
    return str(data[-1]["text/plain"])


def cgroup_paths(session: KernelSession) -> list[Path]:
    plan = session.manager.plan  # type: ignore[attr-defined]  # the local sandbox's
    return list(plan.cgroups) if plan is not None else []


# ---- state ---------------------------------------------------------------------------


def test_state_persists_and_reset_clears_it(shared: KernelSession) -> None:
    run_ok(shared, "persisted = 41")
    assert text_plain(run_ok(shared, "persisted + 1")) == "42"
    shared.reset()
    result = shared.execute("persisted")
    assert result.status == "error"
    assert result.error is not None and result.error.ename == "NameError"
    assert result.recovery == "none" and not result.state_lost


def test_execution_count_and_user_expressions(shared: KernelSession) -> None:
    first = run_ok(shared, "a_value = 3")
    second = run_ok(shared, "a_value * 2", user_expressions={"doubled": "a_value * 2"})
    assert first.execution_count is not None and second.execution_count is not None
    assert second.execution_count == first.execution_count + 1
    assert second.user_expressions["doubled"]["data"]["text/plain"] == "6"
    silent = shared.execute("a_value = 4", silent=True, store_history=False)
    assert silent.ok and silent.outputs == []


def test_startup_code_survives_reset_and_restart(tmp_path: Path) -> None:
    with KernelSession(
        runtime_dir=str(tmp_path), timeout=60, startup_code=["HELPER = 'ready'"]
    ) as session:
        run_ok(session, "scratch = 1")
        session.reset()
        assert text_plain(run_ok(session, "HELPER")) == "'ready'"
        session.restart()
        assert session.restarts == 1
        assert text_plain(run_ok(session, "HELPER")) == "'ready'"
        assert session.execute("scratch").error is not None


@pytest.mark.timeout(120)  # the restart below once deadlocked on the session's own lock
def test_startup_code_reruns_when_a_stuck_cell_forces_a_restart(tmp_path: Path) -> None:
    with KernelSession(
        runtime_dir=str(tmp_path), timeout=60, interrupt_grace=1, startup_code=["HELPER = 1"]
    ) as session:
        stuck = session.execute(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
            timeout=1,
        )
        assert stuck.recovery == "restarted" and stuck.state_lost, stuck.reason
        assert session.restarts == 1
        assert text_plain(run_ok(session, "HELPER")) == "1"


# ---- outputs ---------------------------------------------------------------------------

OUTPUT_CELLS = [
    "print('to stdout'); import sys; print('to stderr', file=sys.stderr)",
    "6 * 7",
    "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))",
    "h = display('first', display_id=True)\nh.update('second')",
    "from IPython.display import Markdown\nMarkdown('*md*')",
    "1 / 0",
    "import pandas as pd\npd.DataFrame({'a': [1, 2]})",
    "from IPython.display import clear_output\nprint('old')\nclear_output(wait=True)\nprint('new')",
]


def test_outputs_are_valid_nbformat_nodes(shared: KernelSession) -> None:
    cells = []
    for source in OUTPUT_CELLS:
        result = shared.execute(source)
        assert all(isinstance(o, NotebookNode) for o in result.outputs)
        cells.append(
            new_code_cell(source, outputs=result.outputs, execution_count=result.execution_count)
        )
    notebook = new_notebook(cells=cells)
    nbformat.validate(notebook)
    again = nbformat.reads(nbformat.writes(notebook), as_version=4)
    nbformat.validate(again)
    kinds = [[o.output_type for o in cell.outputs] for cell in cells]
    assert kinds[0] == ["stream", "stream"]
    assert kinds[1] == ["execute_result"] and kinds[5] == ["error"]
    assert cells[2].outputs[0].data["text/html"] == "<b>bold</b>"
    assert cells[3].outputs[0].data["text/plain"] == "'second'"  # updated in place
    assert "text/html" in cells[6].outputs[0].data
    assert [o.text for o in cells[7].outputs] == ["new\n"]  # cleared, as Jupyter shows it


def test_streams_errors_and_ansi_free_traceback(shared: KernelSession) -> None:
    result = shared.execute("print('out'); import sys; print('err', file=sys.stderr); 1/0")
    assert result.status == "error"
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert result.error is not None
    assert (result.error.ename, result.error.evalue) == ("ZeroDivisionError", "division by zero")
    assert result.error.traceback and not any("\x1b[" in line for line in result.error.traceback)
    assert "ZeroDivisionError" in result.reason
    assert result.duration > 0


def test_outputs_stream_to_callback(shared: KernelSession) -> None:
    seen: list[NotebookNode] = []
    result = shared.execute("for i in range(3): print(i, flush=True)", on_output=seen.append)
    assert result.stdout == "0\n1\n2\n"
    assert seen and all(o.output_type == "stream" for o in seen)
    assert "".join(o.text for o in seen) == "0\n1\n2\n"


@pytest.mark.timeout(300)
def test_matplotlib_plot_is_display_data_png(shared: KernelSession) -> None:
    # First import builds the font cache inside the sandbox's private /tmp.
    result = run_ok(
        shared,
        """
        import matplotlib.pyplot as plt
        plt.plot([1, 3, 2])
        plt.show()
        """,
        timeout=240,
    )
    images = [o for o in result.outputs if o.output_type == "display_data"]
    assert images and "image/png" in images[0].data
    assert base64.b64decode(images[0].data["image/png"]).startswith(b"\x89PNG")


# ---- stdin ----------------------------------------------------------------------------


def test_stdin_handler_answers_input(shared: KernelSession) -> None:
    prompts: list[tuple[str, bool]] = []

    def answer(prompt: str, password: bool) -> str:
        prompts.append((prompt, password))
        return "hunter2" if password else "Ada"

    result = run_ok(
        shared,
        """
        import getpass
        name = input("Name? ")
        secret = getpass.getpass("Password: ")
        print("hello", name, len(secret))
        """,
        stdin_handler=answer,
    )
    assert result.stdout.strip().endswith("hello Ada 7")
    assert prompts == [("Name? ", False), ("Password: ", True)]


def test_async_stdin_handler(shared: KernelSession) -> None:
    async def answer(prompt: str, password: bool) -> str:
        await asyncio.sleep(0)
        return prompt.upper()

    result = run_ok(shared, "print(input('shout'))", stdin_handler=answer)
    assert result.stdout.strip().endswith("SHOUT")


def test_concurrent_executes_queue_instead_of_reading_each_others_replies(
    shared: KernelSession,
) -> None:
    async def both() -> list[Any]:
        return await asyncio.gather(
            shared.async_execute("import time; time.sleep(0.3); print('first')"),
            shared.async_execute("print('second')"),
        )

    first, second = run_sync(both)()
    assert (first.status, first.stdout.strip()) == ("ok", "first")
    assert (second.status, second.stdout.strip()) == ("ok", "second")
    assert second.execution_count == first.execution_count + 1


def test_time_waiting_for_a_human_does_not_count_against_the_timeout(
    shared: KernelSession,
) -> None:
    def slow_human(prompt: str, password: bool) -> str:
        time.sleep(4)  # longer than the cell's whole timeout
        return "eventually"

    result = run_ok(shared, "print(input('? '))", timeout=3, stdin_handler=slow_human)
    assert not result.timed_out and result.stdout.strip().endswith("eventually")


def test_failing_stdin_handler_raises_and_stops_the_cell(shared: KernelSession) -> None:
    def broken(prompt: str, password: bool) -> str:
        raise LookupError("no human here")

    run_ok(shared, "before_input = 5")
    with pytest.raises(LookupError, match="no human here"):
        shared.execute("input('? ')", timeout=60, stdin_handler=broken)
    assert text_plain(run_ok(shared, "before_input")) == "5"  # interrupted, not restarted


def test_input_without_handler_fails_clearly(shared: KernelSession) -> None:
    result = shared.execute("input('Name? ')", timeout=60)
    assert result.status == "error" and not result.timed_out
    assert result.error is not None and result.error.ename == "StdinNotImplementedError"
    assert result.duration < HANG_BOUND


# ---- timeouts -------------------------------------------------------------------------


def test_busy_loop_is_interrupted_and_state_kept(shared: KernelSession) -> None:
    run_ok(shared, "kept = 'still here'")
    restarts = shared.restarts
    result = shared.execute("while True: pass", timeout=2)
    assert result.timed_out and result.recovery == "interrupted"
    assert not result.state_lost and not result.kernel_died
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert 2 <= result.duration < 2 + shared.interrupt_grace + HANG_BOUND
    assert "interrupted" in result.reason
    assert shared.restarts == restarts
    assert text_plain(run_ok(shared, "kept")) == "'still here'"


def test_cell_ignoring_sigint_is_ended_by_restart(shared: KernelSession) -> None:
    run_ok(shared, "doomed = 1")
    restarts = shared.restarts
    result = shared.execute(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        timeout=2,
    )
    assert result.timed_out and result.recovery == "restarted" and result.state_lost
    assert result.status == "timeout"
    assert "LOST" in result.reason
    assert result.duration < 2 + shared.interrupt_grace + HANG_BOUND
    assert shared.restarts == restarts + 1 and shared.is_alive
    after = shared.execute("doomed")
    assert after.error is not None and after.error.ename == "NameError"


def test_interrupt_api_stops_a_running_cell(tmp_path: Path) -> None:
    async def scenario() -> ExecutionResult:
        async with KernelSession(runtime_dir=str(tmp_path), timeout=60) as session:
            started = asyncio.Event()
            running = asyncio.ensure_future(
                session.async_execute(
                    "import time; print('started', flush=True); time.sleep(600)",
                    on_output=lambda output: started.set(),
                )
            )
            await asyncio.wait_for(started.wait(), timeout=HANG_BOUND)
            await session.async_interrupt()
            return await running

    result = run_in_thread(scenario)
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert not result.timed_out and result.recovery == "none"


# ---- limits and death ----------------------------------------------------------------


def test_huge_allocation_fails_cleanly(shared: KernelSession) -> None:
    run_ok(shared, "survivor = 'yes'")
    result = shared.execute("blob = bytearray(10 * 1024**3)", timeout=60)
    if result.kernel_died:  # the other accepted outcome: only the kernel died, and came back
        assert result.recovery == "restarted" and result.state_lost
    else:
        assert result.error is not None and result.error.ename == "MemoryError"
        assert result.recovery == "none" and not result.state_lost
        assert text_plain(run_ok(shared, "survivor")) == "'yes'"
    assert text_plain(run_ok(shared, "1 + 1")) == "2"


@pytest.mark.timeout(240)
def test_memory_cgroup_kills_only_the_kernel_which_restarts(tmp_path: Path) -> None:
    # Without RLIMIT_AS the allocation succeeds and only the cgroup can stop it.
    sandbox = SandboxConfig(memory_limit=256 * MIB, address_space_limit=0)
    with KernelSession(runtime_dir=str(tmp_path), timeout=120, sandbox=sandbox) as session:
        if not any("memory" in line for line in session.isolation):
            pytest.skip("no writable memory cgroup on this host")
        result = session.execute("hog = b'x' * (1024 * 1024**2)", timeout=120)
        assert result.kernel_died and result.recovery == "restarted" and result.state_lost
        assert result.status == "died"
        assert "out-of-memory" in result.reason
        assert session.is_alive and session.restarts == 1
        assert text_plain(run_ok(session, "1 + 1")) == "2"


FORK_BOMB = """
import os, time
forked, failure = 0, None
try:
    for _ in range(2000):  # bounded even if no limit applied
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(30)  # hold the slot, never fork again
            finally:
                os._exit(0)
        forked += 1
except OSError as exc:
    failure = type(exc).__name__
print(forked, failure)
"""


@pytest.mark.timeout(240)
def test_fork_bomb_is_contained_and_session_recovers(tmp_path: Path) -> None:
    sandbox = SandboxConfig(pids_limit=64)
    with KernelSession(runtime_dir=str(tmp_path), timeout=60, sandbox=sandbox) as session:
        if not any("pids" in line or "NPROC" in line for line in session.isolation):
            pytest.skip("no process limit applies on this host")
        run_ok(session, "before_bomb = 1")
        result = session.execute(FORK_BOMB, timeout=60)
        assert result.recovery == "restarted" and result.state_lost, result
        assert "process limit" in result.reason or result.timed_out or result.kernel_died
        if result.stdout:
            forked, failure = result.stdout.split()
            assert int(forked) < 64 and failure == "BlockingIOError"
        assert text_plain(run_ok(session, "1 + 1")) == "2"
        assert session.execute("before_bomb").error is not None
        pids = [p for p in cgroup_paths(session) if p.parent.parent.name == "pids"]
        for path in pids:  # the bomb's children went with the old kernel
            assert int((path / "pids.current").read_text()) < 40


@pytest.mark.timeout(240)
def test_cpu_time_backstop_kills_and_is_reported(tmp_path: Path) -> None:
    sandbox = SandboxConfig(cpu_seconds=3)
    with KernelSession(runtime_dir=str(tmp_path), timeout=120, sandbox=sandbox) as session:
        result = session.execute("while True: pass", timeout=120)
        assert result.kernel_died and result.recovery == "restarted" and not result.timed_out
        assert "CPU-time limit" in result.reason
        assert text_plain(run_ok(session, "1 + 1")) == "2"


def test_os_exit_is_detected_and_kernel_restarted(shared: KernelSession) -> None:
    run_ok(shared, "lost_soon = 1")
    restarts = shared.restarts
    result = shared.execute("import os; os._exit(1)", timeout=120)
    assert result.kernel_died and result.recovery == "restarted" and result.state_lost
    assert result.status == "died" and not result.timed_out
    assert "exit status 1" in result.reason
    assert result.duration < 10  # loose: detection polls every 0.1 s, then a restart
    assert shared.restarts == restarts + 1
    assert shared.execute("lost_soon").error is not None


def test_segfault_is_detected(shared: KernelSession) -> None:
    result = shared.execute("import ctypes; ctypes.string_at(0)", timeout=120)
    assert result.kernel_died and result.recovery == "restarted"
    assert "SIGSEGV" in result.reason
    assert text_plain(run_ok(shared, "1 + 1")) == "2"


# ---- lifecycle and cleanup --------------------------------------------------------------


def test_shutdown_removes_session_folder_and_cgroups(tmp_path: Path) -> None:
    session = KernelSession(runtime_dir=str(tmp_path), timeout=60).start()
    session_dir = session.session_dir
    cgroups = cgroup_paths(session)
    assert session_dir is not None and session_dir.is_dir()
    assert all(path.is_dir() for path in cgroups)
    assert session.is_alive
    session.shutdown()
    assert not session_dir.exists()
    for path in cgroups:
        assert not path.exists(), path
    assert not session.is_alive
    with pytest.raises(SessionClosed):
        session.execute("1")
    session.shutdown()  # idempotent


def test_kernel_that_cannot_start_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    session = KernelSession(runtime_dir=str(tmp_path), kernel_python="/nonexistent/python3")
    started = time.monotonic()
    with pytest.raises(KernelStartError, match="nonexistent"):
        session.start()
    assert time.monotonic() - started < session.startup_timeout + HANG_BOUND
    assert not session.manager.has_kernel and list(tmp_path.iterdir()) == []


def test_too_long_runtime_dir_is_refused_with_the_fix(tmp_path: Path) -> None:
    runtime = tmp_path / ("r" * 120)
    with pytest.raises(KernelStartError, match="shorter runtime_dir"):
        KernelSession(runtime_dir=str(runtime)).start()
    assert list(runtime.iterdir()) == []


def test_sessions_never_share_a_kernel(shared: KernelSession, tmp_path: Path) -> None:
    with KernelSession(runtime_dir=str(tmp_path), timeout=60) as other:
        assert other.session_dir != shared.session_dir
        run_ok(other, "mine = 'other'")
        assert shared.execute("mine").error is not None


STARTER = """
import json, sys, time
from codeact_kernel import KernelSession
session = KernelSession(runtime_dir=sys.argv[1], timeout=60).start()
plan = session.manager.plan
print(json.dumps({"session_dir": str(session.session_dir),
                  "cgroups": [str(p) for p in plan.cgroups],
                  "bwrap_pid": session.manager.process.pid}), flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(240)
def test_leftovers_of_a_killed_owner_are_swept(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    owner = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        line = run_with_timeout(owner.stdout.readline, 120)
        info = json.loads(line)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=60)
    session_dir = Path(info["session_dir"])
    cgroups = [Path(p) for p in info["cgroups"]]
    assert session_dir.is_dir()  # a SIGKILLed owner cleans up nothing itself
    assert all(path.is_dir() for path in cgroups)
    with KernelSession(runtime_dir=str(tmp_path), timeout=60) as session:
        assert not session_dir.exists()
        for path in cgroups:
            assert not path.exists(), path
        assert session.session_dir is not None and session.session_dir.is_dir()
    assert process_ends(info["bwrap_pid"], within=HANG_BOUND)


def test_async_context_manager(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, bool]:
        async with KernelSession(runtime_dir=str(tmp_path), timeout=60) as session:
            result = await session.async_execute("21 * 2")
            alive = await session.async_is_alive()
            await session.async_reset()
        return text_plain(result), alive

    assert run_in_thread(scenario) == ("42", True)
    assert list(tmp_path.iterdir()) == []


# ---- helpers ------------------------------------------------------------------------------


def run_in_thread(scenario: Any) -> Any:
    """Run an async scenario on its own loop, away from the sync API's per-thread loop."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(scenario())
        except BaseException as exc:  # handed back to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=170)
    assert not thread.is_alive(), "async scenario hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


def process_ends(pid: int, within: float) -> bool:
    """True once ``pid`` is gone or a zombie (reaping orphans is init's job, not ours)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True
        if "\nState:\tZ" in status:
            return True
        time.sleep(0.1)
    return False


def run_with_timeout(func: Any, seconds: float) -> Any:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", func()), daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert "value" in box, "timed out"
    return box["value"]


def test_a_session_shut_down_under_a_running_cell_ends_the_cell(tmp_path: Path) -> None:
    # Ctrl-C in `codeact run` shuts the session down while the step still waits on
    # iopub: the wait must end, not spin on "session closed" as an unreadable message.
    async def scenario() -> None:
        session = KernelSession(runtime_dir=str(tmp_path / "rt"), timeout=120)
        await session.async_start()
        try:
            cell = asyncio.ensure_future(
                session.async_execute("import time\nprint('up', flush=True)\ntime.sleep(60)"))
            await asyncio.sleep(2.0)
            began = time.monotonic()
            await session.async_shutdown()
            with pytest.raises(SessionClosed):
                await asyncio.wait_for(cell, HANG_BOUND)
            assert time.monotonic() - began < HANG_BOUND
        finally:
            await session.async_shutdown()

    asyncio.run(scenario())
