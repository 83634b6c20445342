"""Isolation, shown from inside a real kernel running in real bubblewrap.

Nothing here is mocked: every check runs Python inside the sandboxed kernel
and reports what it could (not) do, so a regression in the bwrap plan shows
up as a kernel that can see or touch something it must not.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeact_kernel import KernelSession, SandboxConfig, SandboxUnavailable
from codeact_kernel.sandbox.config import UnsafeSandboxWarning

pytestmark = pytest.mark.timeout(180)

FAKE_KEY = f"sk-test-{uuid.uuid4().hex}"
IS_ROOT = os.geteuid() == 0


def probe(session: KernelSession, code: str, **substitutions: Any) -> Any:
    """Run ``code`` in the kernel; its last stdout line is JSON and is returned decoded."""
    source = textwrap.dedent(code)
    for name, value in substitutions.items():
        source = source.replace(name, repr(value))
    result = session.execute(source, timeout=60)
    assert result.ok, f"{result.reason}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def host_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Readable files on the host, in places the sandbox does not bind."""
    tag = uuid.uuid4().hex
    files = {"pytest_tmp": tmp_path_factory.mktemp("host-only") / "secret.txt"}
    if IS_ROOT:
        files["root_home"] = Path(f"/root/codeact-secret-{tag}.txt")
        files["srv"] = Path(f"/srv/codeact-test-{tag}/secret.txt")
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"host secret {tag}\n")
        path.chmod(0o644)  # readable by anyone who can reach it: only the binds protect it
    yield files
    for path in files.values():
        path.unlink(missing_ok=True)
    if "srv" in files:
        shutil.rmtree(files["srv"].parent, ignore_errors=True)


@pytest.fixture(scope="module", params=["no-egress", "egress"])
def sandboxed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KernelSession]:
    """One kernel started while the host environment holds fake secrets; every isolation
    test runs twice: without network, and with an egress allow-list (whose proxy must
    leave all of the isolation as it was)."""
    runtime = tmp_path_factory.mktemp("runtime")
    sandbox = SandboxConfig()
    if request.param == "egress":
        sandbox = SandboxConfig(allowed_domains=["example.com", "*.pypi.org"])
    with pytest.MonkeyPatch.context() as mp:
        # Kept for the module's life: a restart re-plans the launch from os.environ.
        mp.setenv("OPENAI_API_KEY", FAKE_KEY)
        mp.setenv("CODEACT_FAKE_TOKEN", FAKE_KEY)
        mp.setenv("JPY_PARENT_PID", str(os.getpid()))
        with KernelSession(runtime_dir=str(runtime), timeout=60, sandbox=sandbox) as session:
            assert (session.manager.egress is not None) == (request.param == "egress")
            yield session


# ---- network -----------------------------------------------------------------------


def _host_address() -> str:
    """The host's outbound IPv4 address (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, never contacted
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


NET_PROBE = """
import json, socket
out = {}
for host, port in TARGETS:
    try:
        socket.create_connection((host, port), timeout=5).close()
        out[f"{host}:{port}"] = "connected"
    except OSError as exc:
        out[f"{host}:{port}"] = type(exc).__name__
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"x", ("8.8.8.8", 53))
    out["udp"] = "sent"
except OSError as exc:
    out["udp"] = type(exc).__name__
for name in ("example.com", "pypi.org"):
    try:
        socket.getaddrinfo(name, 443)
        out[f"dns:{name}"] = "resolved"
    except OSError as exc:
        out[f"dns:{name}"] = type(exc).__name__
out["interfaces"] = [name for _, name in socket.if_nameindex()]
print(json.dumps(out))
"""


def test_no_network(sandboxed: KernelSession) -> None:
    # A listener on the host proves that even local host services are unreachable.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        targets = [
            ("1.1.1.1", 53), ("8.8.8.8", 443), ("93.184.215.14", 80),
            ("127.0.0.1", port), (_host_address(), port), ("::1", port),
            ("2001:4860:4860::8888", 443),
        ]  # fmt: skip
        out = probe(sandboxed, NET_PROBE, TARGETS=targets)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing from the sandbox ever reached the host
    for host, target_port in targets:
        assert out[f"{host}:{target_port}"] != "connected", (host, out)
    assert out["udp"] != "sent"
    assert out["dns:example.com"] == "gaierror"
    assert out["dns:pypi.org"] == "gaierror"
    assert set(out["interfaces"]) <= {"lo"}, out["interfaces"]


# ---- filesystem ----------------------------------------------------------------------

WRITE_PROBE = """
import json, os
out = {}
name = "codeact-write-probe-" + TAG
for folder in FOLDERS:
    path = os.path.join(folder, name)
    try:
        with open(path, "w") as handle:
            handle.write("x")
        out[folder] = "written"
        os.unlink(path)
    except OSError as exc:
        out[folder] = type(exc).__name__
    try:
        os.mkdir(path + ".d")
        out[folder + " (mkdir)"] = "written"
        os.rmdir(path + ".d")
    except OSError as exc:
        out[folder + " (mkdir)"] = type(exc).__name__
print(json.dumps(out))
"""


def test_writes_only_in_tmp_and_work_folder(sandboxed: KernelSession) -> None:
    assert sandboxed.session_dir is not None
    forbidden = [
        "/", "/usr", "/usr/lib", "/etc", "/bin", "/var", "/home", "/opt", "/root", "/srv",
        "/proc/sys", "/sys", sys.prefix, sys.base_prefix, str(Path(sys.executable).parent),
        str(sandboxed.session_dir), str(Path(sandboxed.runtime_dir)),
    ]  # fmt: skip
    allowed = ["/tmp", "/dev/shm", str(sandboxed.work_path)]
    tag = uuid.uuid4().hex
    out = probe(sandboxed, WRITE_PROBE, FOLDERS=forbidden + allowed, TAG=tag)
    for folder in forbidden:
        assert out[folder] != "written", (folder, out)
        assert out[folder + " (mkdir)"] != "written", (folder, out)
        assert not Path(folder, f"codeact-write-probe-{tag}").exists()
    for folder in allowed:
        assert out[folder] == "written", (folder, out)


def test_work_folder_is_cwd_and_home_and_shared_with_host(sandboxed: KernelSession) -> None:
    out = probe(
        sandboxed,
        """
        import json, os
        with open("made-inside.txt", "w") as handle:
            handle.write("hello host")
        print(json.dumps({"cwd": os.getcwd(), "home": os.environ["HOME"]}))
        """,
    )
    assert out["cwd"] == out["home"] == str(sandboxed.work_path)
    assert (sandboxed.work_path / "made-inside.txt").read_text() == "hello host"


READ_PROBE = """
import json, os
out = {}
for path in PATHS:
    try:
        with open(path) as handle:
            out[path] = "read:" + handle.read()
    except OSError as exc:
        out[path] = type(exc).__name__
for folder in ("/root", "/srv", "/home"):
    try:
        out["ls " + folder] = os.listdir(folder)
    except OSError as exc:
        out["ls " + folder] = type(exc).__name__
print(json.dumps(out))
"""


def test_host_files_outside_binds_cannot_be_read(
    sandboxed: KernelSession, host_secrets: dict[str, Path]
) -> None:
    paths = [str(p) for p in host_secrets.values()]
    paths += ["/etc/shadow", "/etc/hostname", "/etc/resolv.conf"]
    paths += [p for p in ("/root/.bash_history", "/root/.ssh/id_rsa") if os.path.exists(p)]
    out = probe(sandboxed, READ_PROBE, PATHS=paths)
    for path in paths:
        assert not str(out[path]).startswith("read:"), (path, out[path])
    for secret in host_secrets.values():
        assert out[str(secret)] in ("FileNotFoundError", "PermissionError")
    listing = json.dumps({k: v for k, v in out.items() if k.startswith("ls ")})
    assert "codeact-secret" not in listing and "codeact-test" not in listing


def test_python_and_venv_are_readable_but_not_writable(sandboxed: KernelSession) -> None:
    # Positive control for the read-only binds: the kernel imports from them.
    out = probe(
        sandboxed,
        """
        import json, os, sys, ipykernel
        print(json.dumps({"prefix": sys.prefix, "ipykernel": ipykernel.__file__,
                          "writable": os.access(ipykernel.__file__, os.W_OK)}))
        """,
    )
    assert out["prefix"] == sys.prefix
    assert out["writable"] is False


# ---- privileges ---------------------------------------------------------------------


def test_no_capabilities_and_no_new_privileges(sandboxed: KernelSession) -> None:
    out = probe(
        sandboxed,
        """
        import json, os
        fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        status = {k: v.strip() for k, v in fields.items()}
        try:
            os.setuid(0)
            setuid = "succeeded"
        except OSError as exc:
            setuid = type(exc).__name__
        print(json.dumps({"status": status, "uid": os.getuid(), "euid": os.geteuid(),
                          "setuid": setuid}))
        """,
    )
    status = out["status"]
    for cap in ("CapEff", "CapPrm", "CapAmb", "CapInh"):
        assert int(status[cap], 16) == 0, (cap, status[cap])
    assert status["NoNewPrivs"] == "1"
    assert out["setuid"] == "PermissionError"
    if IS_ROOT:
        assert int(status["CapBnd"], 16) == 0
        assert out["uid"] == out["euid"] == 65534


def test_syscall_filter_denies_namespaces_ptrace_and_kernel_interfaces(
    sandboxed: KernelSession,
) -> None:
    # Before the filter, a forked child made a user namespace (every capability inside
    # it) and ptrace, io_uring, bpf and keyctl were all reachable.
    out = probe(
        sandboxed,
        """
        import ctypes, json, os, subprocess, threading
        libc = ctypes.CDLL(None, use_errno=True)
        def errno_of(rc):
            return 0 if rc == 0 else ctypes.get_errno()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # unshare(CLONE_NEWUSER) needs a single-threaded process
            cloned = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(NEWUSER|SIGCHLD)
            if cloned == 0:
                os._exit(0)  # the clone itself: it must not run the rest
            found = [errno_of(libc.unshare(0x10000000)), errno_of(cloned)]
            os.write(w, json.dumps(found).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        unshare_user, clone_newuser = json.loads(os.read(r, 64))
        result = {
            "unshare_user": unshare_user, "clone_newuser": clone_newuser,
            "ptrace": errno_of(libc.ptrace(0, 0, 0, 0)),
            "io_uring_setup": errno_of(libc.syscall(425, 1, 0)),
            "bpf": errno_of(libc.syscall(321, 0, 0, 0)),
            "keyctl": errno_of(libc.syscall(250, 0, -1, 0)),
            "clone3": errno_of(libc.syscall(435, 0, 0)),
        }
        t = threading.Thread(target=result.setdefault, args=("thread", "ran"))
        t.start(); t.join()
        echo = subprocess.run(["echo", "ok"], capture_output=True, text=True)
        result["subprocess"] = echo.stdout.strip()
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        result["seccomp"] = status["Seccomp"].strip()
        print(json.dumps(result))
        """,
    )
    for name in ("unshare_user", "clone_newuser", "ptrace", "io_uring_setup", "bpf", "keyctl"):
        assert out[name] == errno.EPERM, (name, out)
    assert out["clone3"] == errno.ENOSYS  # so glibc falls back to clone, whose flags we see
    assert (out["thread"], out["subprocess"], out["seccomp"]) == ("ran", "ok", "2")


# ---- environment --------------------------------------------------------------------

ENV_PROBE = """
import glob, json, os
key = KEY
out = {"names": sorted(os.environ), "in_values": any(key in v for v in os.environ.values())}
procs = {}
for folder in glob.glob("/proc/[0-9]*"):
    pid = folder.rsplit("/", 1)[1]
    for part in ("environ", "cmdline"):
        try:
            with open(f"{folder}/{part}", "rb") as handle:
                procs[f"{pid}/{part}"] = "LEAKED" if key.encode() in handle.read() else "clean"
        except OSError as exc:
            procs[f"{pid}/{part}"] = type(exc).__name__
out["procs"] = procs
out["self"] = os.getpid()
print(json.dumps(out))
"""


def _process_tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _process_tree(int(child))
    return found


def test_host_secrets_are_absent_from_every_process(sandboxed: KernelSession) -> None:
    assert os.environ["OPENAI_API_KEY"] == FAKE_KEY  # the host really has it
    out = probe(sandboxed, ENV_PROBE, KEY=FAKE_KEY)
    assert "OPENAI_API_KEY" not in out["names"]
    assert "CODEACT_FAKE_TOKEN" not in out["names"]
    assert "JPY_PARENT_PID" not in out["names"]
    assert out["in_values"] is False
    procs = out["procs"]
    assert "1/environ" in procs and f"{out['self']}/environ" in procs
    assert procs[f"{out['self']}/environ"] == "clean"  # readable, so the check is real
    for name, verdict in procs.items():
        assert verdict != "LEAKED", name
    assert procs["1/environ"] in ("clean", "PermissionError")


def test_host_view_of_sandbox_processes_has_no_secret(sandboxed: KernelSession) -> None:
    # From the host (as root) bwrap's init is readable even when the kernel cannot read it.
    process = sandboxed.manager.process  # type: ignore[attr-defined]  # the local sandbox's
    assert process is not None
    pids = _process_tree(process.pid)
    assert len(pids) >= 3  # bwrap, bwrap's init (pid 1 inside), the kernel
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert FAKE_KEY.encode() not in environ, pid
        assert b"JPY_PARENT_PID" not in environ, pid


# ---- refusing to run unsafely --------------------------------------------------------


def test_missing_bwrap_fails_naming_the_fix(tmp_path: Path) -> None:
    session = KernelSession(
        runtime_dir=str(tmp_path), sandbox=SandboxConfig(bwrap_path="/nonexistent/bwrap")
    )
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap"):
        session.start()
    assert not session.is_alive
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing left behind


def test_broken_bwrap_fails_and_never_falls_back(tmp_path: Path) -> None:
    session = KernelSession(
        runtime_dir=str(tmp_path), sandbox=SandboxConfig(bwrap_path="/bin/false")
    )
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap") as info:
        session.start()
    assert "apt-get install bubblewrap" in str(info.value)
    assert not session.manager.has_kernel


@pytest.mark.timeout(120)
def test_unsandboxed_mode_warns_loudly_every_time(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.warns(UnsafeSandboxWarning) as record:
        with KernelSession(
            runtime_dir=str(tmp_path), sandbox=SandboxConfig(mode="none"), timeout=60
        ) as session:
            assert session.execute("1 + 1").outputs[0].data["text/plain"] == "2"
            session.restart()
    assert len([w for w in record if issubclass(w.category, UnsafeSandboxWarning)]) >= 2
    assert capfd.readouterr().err.count("WITHOUT A SANDBOX") >= 2
    assert any("NONE" in line for line in session.isolation)


# ---- the plan itself -------------------------------------------------------------------


def test_plan_has_the_recipes_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("JPY_PARENT_PID", "1")
    config = SandboxConfig(use_cgroups=False, extra_env={"CODEACT_EXTRA": "yes"})
    (tmp_path / "work").mkdir()
    plan = config.plan(["python", "-V"], tmp_path, tmp_path / "work")
    argv = plan.argv
    for flag in (
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session", "--clearenv", "--remount-ro",
    ):  # fmt: skip
        assert flag in argv, flag
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert FAKE_KEY not in " ".join(argv) and "JPY_PARENT_PID" not in " ".join(argv)
    assert "CODEACT_EXTRA=yes" not in argv and "CODEACT_EXTRA" in argv
    assert plan.env == {"PATH": "/usr/bin:/bin"}  # bwrap itself starts with a minimal env
    assert argv[-2:] == ["python", "-V"]
    fd = argv[argv.index("--seccomp") + 1]
    assert f"exec {fd}< " in argv[2] and (tmp_path / "seccomp.bpf").stat().st_size > 0
    config.seccomp = False
    assert "--seccomp" not in config.plan(["python", "-V"], tmp_path, tmp_path / "work").argv


def test_a_plot_prints_no_fontconfig_error(session: KernelSession) -> None:
    # A fresh kernel: matplotlib builds its font list (running fc-list) on the first plot.
    result = session.execute(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], label='sales')\nplt.legend()\nplt.title('Sales')\nplt.show()\n"
        "import subprocess\n"
        "fonts = subprocess.run(['fc-list'], capture_output=True, text=True)\n"
        "print(len(fonts.stdout.splitlines()) > 0, repr(fonts.stderr))\n",
        timeout=120,
    )
    assert result.ok, result.error.text if result.error else result.reason
    assert any("image/png" in o.get("data", {}) for o in result.outputs)
    stderr = "".join(o.get("text", "") for o in result.outputs
                     if o.get("output_type") == "stream" and o.get("name") == "stderr")
    assert "Fontconfig" not in stderr, stderr
    assert result.stdout.strip().splitlines()[-1] == "True ''"  # fonts found, fc-list quiet
    assert not (session.work_path / ".cache").exists()  # its cache went to the sandbox's /tmp
