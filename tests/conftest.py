"""Shared fixtures: real sandboxed kernels, no mocks."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeact_kernel import KernelSession

from .scripted_llm import ScriptedLLMServer

# Seconds the interpreter may take to exit once pytest is done.
EXIT_GRACE = 60.0


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runtime"
    path.mkdir()
    return path


@pytest.fixture
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def session(runtime_dir: Path) -> Iterator[KernelSession]:
    with KernelSession(runtime_dir=str(runtime_dir), timeout=30) as s:
        yield s


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Bound the interpreter's exit: a test that timed out can leave a task pending on its
    event loop, and a non-daemon worker thread tied to that task (AnyIO's) then blocks
    exit forever. CI once spent its whole 90 minutes there after the report was printed;
    this ends it a minute later with pytest's own status (1 if every test passed: the
    leaked thread is the defect), naming the threads."""
    def force_exit() -> None:
        stuck = [t.name for t in threading.enumerate()
                 if t.is_alive() and not t.daemon and t is not threading.main_thread()]
        print(f"\nexit did not finish within {EXIT_GRACE:g}s; threads still running: {stuck}",
              file=sys.stderr, flush=True)
        os._exit(int(exitstatus) or 1)

    watchdog = threading.Timer(EXIT_GRACE, force_exit)
    watchdog.daemon = True
    watchdog.start()
