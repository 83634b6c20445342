"""Shared fixtures: real sandboxed kernels, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
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


@pytest.fixture(scope="session")
def python_without_pyarrow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python environment with this one's packages except pyarrow (a real venv whose
    site-packages links every other distribution), for kernels that lack it. Its folder
    must be readable in the sandbox: bind it with SandboxConfig.extra_ro_binds."""
    root = tmp_path_factory.mktemp("no-pyarrow")
    root.chmod(0o755)  # the sandbox uid reads it
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    packages = Path(sysconfig.get_paths()["purelib"])
    target = next((venv / "lib").glob("python3*/site-packages"))
    for entry in packages.iterdir():
        if not entry.name.lower().startswith("pyarrow"):
            (target / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import pandas, ipykernel; import pyarrow"],
                           capture_output=True, text=True, timeout=120)
    assert "No module named 'pyarrow'" in check.stderr, check.stderr
    return python


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
