"""The codeact-sandbox kernelspec, driven by real Jupyter clients, in real bubblewrap.

The kernelspec is installed into a temporary prefix that JUPYTER_PATH points
at, so nothing depends on kernelspecs left on the machine.  Frontends talk TCP
to the launcher, which bridges to the sandboxed kernel's ipc sockets.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyter_kernel_test as jkt
import nbformat
import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from codeact_kernel.sandbox.kernelspec import (
    DISPLAY_NAME,
    KERNEL_NAME,
    install_kernelspec,
    kernel_json,
)
from codeact_kernel.sandbox.launcher import SandboxLauncher

pytestmark = pytest.mark.timeout(240)

IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]
FAKE_KEY = f"sk-test-{uuid.uuid4().hex}"
# What a frontend needs, and nothing of codeact_kernel or ipykernel.
FRONTEND_DISTS = [
    "jupyter_client", "jupyter_core", "python-dateutil", "pyzmq", "tornado", "traitlets",
    "platformdirs", "six", "typing_extensions",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def installed() -> Iterator[dict[str, Path]]:
    """The kernelspec, installed in a throwaway prefix that JUPYTER_PATH points at.

    Module-scoped and autouse, so it is in place before the conformance class's setUpClass.
    """
    # Short: the ipc socket paths live under it and unix paths are limited.
    runtime = Path(tempfile.mkdtemp(prefix="cks-"))
    prefix = Path(tempfile.mkdtemp(prefix="cks-prefix-"))
    spec_dir = install_kernelspec(prefix=str(prefix), launcher_args=[f"--runtime-dir={runtime}"])
    data = prefix / "share" / "jupyter"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(data))
        yield {"runtime": runtime, "prefix": prefix, "data": data, "spec": Path(spec_dir)}
    subprocess.run(["rm", "-rf", str(runtime), str(prefix)], check=False)


def start_kernel() -> tuple[KernelManager, Any, float]:
    km = KernelManager(kernel_name=KERNEL_NAME)
    started = time.monotonic()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc, time.monotonic() - started


def stop_kernel(km: KernelManager, kc: Any) -> None:
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=True)


def run(kc: Any, code: str, timeout: float = 30) -> tuple[dict[str, Any], str]:
    """Execute ``code``; return the reply content and everything printed to stdout."""
    out: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=collect)
    return reply["content"], "".join(out)


def session_dirs(runtime: Path, launcher_pid: int) -> list[Path]:
    return sorted(runtime.glob(f"s{launcher_pid}-*"))


def live(pid: int) -> bool:
    """Alive and not a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split() if task.exists() else []
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


# ---- the kernelspec itself -------------------------------------------------------------


def test_installed_kernelspec_names_this_python(installed: dict[str, Path]) -> None:
    spec = json.loads((installed["spec"] / "kernel.json").read_text())
    assert spec["argv"][0] == str(Path(sys.executable).absolute())
    assert spec["argv"][1:5] == ["-m", "codeact_kernel.sandbox.launcher", "-f", "{connection_file}"]
    assert spec["display_name"] == DISPLAY_NAME
    assert spec["interrupt_mode"] == "message"
    assert (installed["spec"] / "logo-64x64.png").exists()


def test_repository_kernelspec_matches_the_installer() -> None:
    shipped = json.loads((REPO / "kernelspec" / KERNEL_NAME / "kernel.json").read_text())
    assert shipped == kernel_json("python")


# ---- conformance ------------------------------------------------------------------------


class TestConformance(jkt.KernelTests):
    """jupyter_kernel_test against the installed codeact-sandbox kernelspec."""

    kernel_name = KERNEL_NAME
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]  # noqa: RUF012
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n"]  # noqa: RUF012
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]  # noqa: RUF012
    invalid_code_samples = ["import = 7q"]  # noqa: RUF012
    code_page_something = "zip?"
    code_generate_error = "raise"
    code_execute_result = [  # noqa: RUF012
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data = [  # noqa: RUF012
        {"code": "from IPython.display import HTML, display; display(HTML('<b>t</b>'))",
         "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\frac{1}{2}'))",
         "mime": "text/latex"},
    ]  # fmt: skip
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"


# ---- real frontends ---------------------------------------------------------------------

NOTEBOOK_CELLS = [
    "x = 21",
    "x * 2",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
    textwrap.dedent(
        """\
        import json, os, socket
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=2)
            net = "reachable"
        except OSError:
            net = "none"
        print(json.dumps({"uid": os.getuid(), "net": net, "env": dict(os.environ)}))
        """
    ),
]


def test_nbclient_runs_a_notebook_in_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEACT_TEST_API_KEY", FAKE_KEY)  # the frontend's env has a secret
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=120, startup_timeout=60).execute()
    nbformat.validate(nb)
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "42"
    plot = [o for o in nb.cells[2].outputs if o["output_type"] == "display_data"]
    assert plot and "image/png" in plot[0]["data"]
    seen = json.loads(nb.cells[3].outputs[0]["text"])
    assert seen["net"] == "none"
    assert seen["uid"] == (65534 if IS_ROOT else os.getuid())
    assert FAKE_KEY not in json.dumps(seen["env"])
    assert "JPY_PARENT_PID" not in seen["env"]


def test_interrupt_over_the_bridge_keeps_state() -> None:
    km, kc, startup = start_kernel()
    try:
        assert run(kc, "x = 'kept'")[0]["status"] == "ok"
        latencies = []
        for how in ("message", "signal"):
            # stop_on_error=False: otherwise ipykernel aborts the next request after the error.
            msg_id = kc.execute("while True: pass", stop_on_error=False)
            _wait_busy(kc, msg_id)
            sent = time.monotonic()
            if how == "message":
                km.interrupt_kernel()  # interrupt_request on the control channel
            else:
                # What interrupt_mode "signal" would do: SIGINT to the launcher's
                # process group. It must interrupt, not kill, the kernel.
                km.signal_kernel(signal.SIGINT)
            reply = _reply_to(kc, msg_id, timeout=10)
            latencies.append(time.monotonic() - sent)
            assert reply["content"].get("ename") == "KeyboardInterrupt", (how, reply["content"])
        _, out = run(kc, "print(x)")
        assert out.strip() == "kept"
        assert km.is_alive()
        print(f"start {startup:.2f}s; interrupt message {latencies[0] * 1000:.0f}ms, "
              f"SIGINT {latencies[1] * 1000:.0f}ms")  # fmt: skip
        assert max(latencies) < 2.0
    finally:
        stop_kernel(km, kc)


def _wait_busy(kc: Any, msg_id: str) -> None:
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "busy"
        ):
            time.sleep(0.2)  # let the loop really start
            return


def _reply_to(kc: Any, msg_id: str, timeout: float) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


# ---- lifecycle and cleanup --------------------------------------------------------------


def _cgroups_of(session: Path) -> list[Path]:
    paths = [Path("/sys/fs/cgroup", c, "codeact", session.name) for c in ("memory", "pids")]
    return [p for p in paths if p.exists()]


def test_shutdown_removes_session_folder_and_cgroups(installed: dict[str, Path]) -> None:
    km, kc, _ = start_kernel()
    launcher = km.provisioner.process  # type: ignore[union-attr]
    [session] = session_dirs(installed["runtime"], launcher.pid)
    cgroups = _cgroups_of(session)
    assert (session / "ipc").is_dir() and (session / "kernel.json").exists()
    kc.stop_channels()
    km.shutdown_kernel()  # graceful: shutdown_request through the bridge
    assert launcher.wait(10) == 0
    assert not session.exists()
    assert not any(p.exists() for p in cgroups)


def test_kernel_exit_status_propagates(installed: dict[str, Path]) -> None:
    km, kc, _ = start_kernel()
    launcher = km.provisioner.process  # type: ignore[union-attr]
    [session] = session_dirs(installed["runtime"], launcher.pid)
    kc.execute("import os; os._exit(7)")
    assert launcher.wait(10) == 7
    assert not session.exists()
    stop_kernel(km, kc)


def test_sigterm_kills_the_sandbox_and_cleans_up(installed: dict[str, Path]) -> None:
    km, kc, _ = start_kernel()
    launcher = km.provisioner.process  # type: ignore[union-attr]
    [session] = session_dirs(installed["runtime"], launcher.pid)
    cgroups = _cgroups_of(session)
    sandbox = descendants(launcher.pid)
    assert len(sandbox) >= 2  # bwrap and the kernel, at least
    msg_id = kc.execute("import time; time.sleep(60)")
    _wait_busy(kc, msg_id)
    os.kill(launcher.pid, signal.SIGTERM)
    assert launcher.wait(10) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 3
    while any(live(pid) for pid in sandbox) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in sandbox if live(pid)]
    assert not session.exists()
    assert not any(p.exists() for p in cgroups)
    stop_kernel(km, kc)


def test_leftovers_of_a_killed_launcher_are_swept(installed: dict[str, Path]) -> None:
    km, kc, _ = start_kernel()
    launcher = km.provisioner.process  # type: ignore[union-attr]
    [session] = session_dirs(installed["runtime"], launcher.pid)
    cgroups = _cgroups_of(session)
    sandbox = descendants(launcher.pid)
    os.kill(launcher.pid, signal.SIGKILL)  # what jupyter_client does on restart(now=True)
    launcher.wait(10)
    deadline = time.monotonic() + 3
    while any(live(pid) for pid in sandbox) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in sandbox if live(pid)], "bwrap --die-with-parent failed"
    assert session.exists()  # nobody was left to clean up...
    stop_kernel(km, kc)
    km2, kc2, _ = start_kernel()  # ...until the next launcher starts
    try:
        assert not session.exists()
        assert not any(p.exists() for p in cgroups)
    finally:
        stop_kernel(km2, kc2)


def test_missing_bwrap_fails_with_the_fix(installed: dict[str, Path], tmp_path: Path) -> None:
    cf, _ = write_connection_file(str(tmp_path / "cf.json"), ip="127.0.0.1")
    proc = subprocess.run(
        [sys.executable, "-m", "codeact_kernel.sandbox.launcher", "-f", cf,
         f"--runtime-dir={installed['runtime']}", "--SandboxConfig.bwrap_path=/nonexistent/bwrap"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "apt-get install bubblewrap" in proc.stderr


def test_unsafe_no_sandbox_is_explicit_and_loud(installed: dict[str, Path], tmp_path: Path) -> None:
    cf, _ = write_connection_file(str(tmp_path / "cf.json"), ip="127.0.0.1")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "codeact_kernel.sandbox.launcher", "-f", cf,
         f"--runtime-dir={installed['runtime']}", "--unsafe-no-sandbox"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        _, out = run(kc, "import os; print(os.getuid())")
        assert int(out) == os.getuid()  # not the sandbox uid: really unsandboxed
        kc.shutdown()
        _, stderr = launcher.communicate(timeout=30)
    finally:
        kc.stop_channels()
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0
    assert "WITHOUT A SANDBOX" in stderr


# ---- configuration ----------------------------------------------------------------------


def test_configuration_files_and_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "codeact_sandbox_config.json").write_text(
        json.dumps({"SandboxConfig": {"memory_limit": 3 * 2**30, "pids_limit": 100}})
    )
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    # The notebook's folder is the launcher's cwd; a config file there must not count.
    (tmp_path / "codeact_sandbox_config.json").write_text(
        json.dumps({"SandboxConfig": {"mode": "none"}})
    )
    monkeypatch.chdir(tmp_path)
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps({"SandboxLauncher": {"terminate_grace": 9.0}}))
    app = SandboxLauncher()
    app.initialize(["-f", "cf.json", "--SandboxConfig.pids_limit=64", f"--config={explicit}"])
    assert app.sandbox.memory_limit == 3 * 2**30  # from the Jupyter config folder
    assert app.sandbox.pids_limit == 64  # the command line wins over files
    assert app.sandbox.mode == "bwrap"
    assert app.terminate_grace == 9.0


def test_every_launcher_option_is_documented() -> None:
    options = SandboxLauncher.class_own_traits(config=True)
    assert "connection_file" in options
    for name, trait in options.items():
        assert trait.help, f"SandboxLauncher.{name} has no help"


# ---- a frontend from another environment ------------------------------------------------


@pytest.fixture(scope="module")
def frontend_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding jupyter_client and its dependencies only (no ipykernel, no codeact)."""
    venv = tmp_path_factory.mktemp("frontend") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    for name in FRONTEND_DISTS:
        dist = importlib.metadata.distribution(name)
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            target = Path(str(dist.locate_file(top)))
            if target.exists() and not (site / top).exists():
                (site / top).symlink_to(target)
    return python


FRONTEND_SCRIPT = """
import sys
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name=sys.argv[1], startup_timeout=60)
out = []
kc.execute_interactive(
    "import os, sys; print(sys.executable, os.getuid())",
    output_hook=lambda m: out.append(m["content"].get("text", "")), timeout=30,
)
print("KERNEL SAYS", "".join(out).strip())
kc.stop_channels()
km.shutdown_kernel()
"""


def test_frontend_from_another_environment(frontend_python: Path) -> None:
    # Run from the venv's folder: from the repository, `-c` would find codeact_kernel in cwd.
    cwd, env = frontend_python.parent, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for module in ("codeact_kernel", "ipykernel"):
        probe = subprocess.run(
            [frontend_python, "-c", f"import {module}"], capture_output=True, cwd=cwd, env=env
        )
        assert probe.returncode != 0, f"{module} should not be importable by the frontend"
    proc = subprocess.run(
        [frontend_python, "-c", FRONTEND_SCRIPT, KERNEL_NAME],
        capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    says = proc.stdout.split("KERNEL SAYS", 1)[1].split()
    assert says[0] == str(Path(sys.executable).absolute())
    assert int(says[1]) == (65534 if IS_ROOT else os.getuid())
