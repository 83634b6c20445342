"""The OS sandbox: how a kernel command is wrapped in bubblewrap, with limits.

The sandbox is the security boundary of codeact_kernel.  This module only
*plans* a launch (argv + environment + cgroups); starting the process is the
job of the provisioner (agent sessions) or the kernelspec launcher (Jupyter
frontends), so both get exactly the same isolation.
"""

from __future__ import annotations

import functools
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Bool, Dict, Enum, Int, List, Unicode
from traitlets.config import Configurable

from ..errors import SandboxUnavailable
from . import seccomp
from .cgroups import join_cgroups_lines, remove_cgroup, try_write
from .egress.settings import EgressSettings, egress_socket_path

INSTALL_HINT = (
    "install bubblewrap (`apt-get install bubblewrap` on Debian/Ubuntu, "
    "`dnf install bubblewrap` on Fedora), or opt out explicitly with "
    "sandbox='none' / --unsafe-no-sandbox"
)
UNSAFE_WARNING = (
    "\n"
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    "!! codeact_kernel is running model-written code WITHOUT A SANDBOX.        !!\n"
    "!! It can read your files, use your network and see your environment.    !!\n"
    "!! This was requested explicitly (sandbox='none'); it is never a default. !!\n"
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
)
# Variables that are safe and useful to carry into the sandbox when the host has them.
# Anything else (API keys, tokens, JPY_PARENT_PID) stays outside.
DEFAULT_PASSTHROUGH = ["LANG", "LC_ALL", "LC_CTYPE", "TZ"]
ETC_FILES = [
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/mime.types",
    # Fontconfig's configuration and the system's font cache: without them every plot's
    # first font lookup (matplotlib runs fc-list) prints "Fontconfig error" on stderr.
    "/etc/fonts",
    "/var/cache/fontconfig",
]
CPU_HARD_MARGIN = 5  # seconds between RLIMIT_CPU's SIGXCPU and its SIGKILL
SECCOMP_FD = 9  # where the launch shell opens the filter for bwrap (sh takes 0 to 9)
GIB = 1024**3
MIB = 1024**2


class UnsafeSandboxWarning(UserWarning):
    """Emitted every time a kernel is started without the OS sandbox."""


@dataclass
class LaunchPlan:
    """Everything needed to start one sandboxed kernel process."""

    argv: list[str]
    env: dict[str, str]
    cgroups: list[Path] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)


class SandboxConfig(EgressSettings, Configurable):
    """How kernels are isolated from the host, the limits they run under, and the network
    egress they get (none unless ``allowed_domains`` names some; see EgressSettings)."""

    mode = Enum(
        ["bwrap", "none"],
        default_value="bwrap",
        help="'bwrap' runs the kernel in bubblewrap (the default and the only safe choice). "
        "'none' runs it as a plain local process; it prints a loud warning every time and "
        "is never chosen automatically.",
    ).tag(config=True)
    bwrap_path = Unicode(
        "", help="Path of the bwrap binary. Empty means look it up on PATH."
    ).tag(config=True)
    memory_limit = Int(
        2 * GIB,
        help="Memory limit of the kernel in bytes (2 GiB). Enforced by a cgroup when one is "
        "writable; otherwise by RLIMIT_AS. 0 disables.",
    ).tag(config=True)
    address_space_limit = Int(
        -1,
        help="RLIMIT_AS of the kernel in bytes. -1 means: memory_limit when no memory "
        "cgroup is available, otherwise 4x memory_limit, so a huge allocation fails "
        "cleanly with MemoryError before the cgroup has to kill. 0 disables.",
    ).tag(config=True)
    pids_limit = Int(
        256,
        help="Maximum processes and threads in the sandbox (a pids cgroup when writable, "
        "else RLIMIT_NPROC, which counts per uid). 0 disables.",
    ).tag(config=True)
    cpu_seconds = Int(
        3600,
        help="RLIMIT_CPU backstop in CPU seconds over the kernel's whole life. Per-cell "
        "control is the wall-clock timeout; this only stops runaway kernels. 0 disables.",
    ).tag(config=True)
    tmp_size = Int(512 * MIB, help="Size of the sandbox's private /tmp tmpfs in bytes.").tag(
        config=True
    )
    shm_size = Int(64 * MIB, help="Size of the sandbox's private /dev/shm tmpfs in bytes.").tag(
        config=True
    )
    sandbox_uid = Int(
        65534,
        help="Uid (and gid) the kernel runs as when the host process is root (nobody).",
    ).tag(config=True)
    use_cgroups = Bool(
        True, help="Create a v1 memory/pids cgroup per kernel when the hierarchy is writable."
    ).tag(config=True)
    cgroup_root = Unicode(
        "/sys/fs/cgroup", help="Mount point of the cgroup hierarchies."
    ).tag(config=True)
    extra_ro_binds = List(
        Unicode(),
        help="Extra host paths made readable (read-only) inside the sandbox, at the same path.",
    ).tag(config=True)
    env_passthrough = List(
        Unicode(),
        default_value=DEFAULT_PASSTHROUGH,
        help="Host environment variables copied into the sandbox when set. Never put "
        "secrets here: tools run on the host precisely so that keys stay outside.",
    ).tag(config=True)
    extra_env = Dict(
        value_trait=Unicode(),
        help="Explicit environment variables set inside the sandbox.",
    ).tag(config=True)
    seccomp = Bool(
        True,
        help="Apply the syscall filter of codeact_kernel.sandbox.seccomp (x86_64): no new "
        "namespaces, "
        "ptrace, io_uring, bpf, perf events, keyrings, mounts or kernel modules inside. "
        "Turn off only to debug a kernel that a denied syscall breaks.",
    ).tag(config=True)

    # ---- checks -----------------------------------------------------------------

    def resolve_bwrap(self) -> str:
        path = self.bwrap_path or shutil.which("bwrap") or ""
        if not path or not os.access(path, os.X_OK):
            raise SandboxUnavailable(f"bubblewrap (bwrap) was not found: {INSTALL_HINT}")
        return path

    def check(self) -> None:
        """Raise SandboxUnavailable, naming the fix, when bwrap cannot start here."""
        if self.mode == "none":
            return
        ok, detail = _probe_bwrap(self.resolve_bwrap(), os.geteuid() == 0)
        if not ok:
            raise SandboxUnavailable(f"bubblewrap is installed but cannot start: {detail}")

    # ---- planning -----------------------------------------------------------------

    def plan(
        self,
        kernel_cmd: list[str],
        session_dir: Path,
        work_dir: Path,
        socket_dir: Path | None = None,
    ) -> LaunchPlan:
        """Wrap ``kernel_cmd`` so that it runs isolated, and say what isolation applies.

        ``session_dir`` holds the connection file; it is bound at the same path.
        When ``socket_dir`` (the folder of the ipc sockets) is given, only that
        folder and ``work_dir`` are writable and the session folder is read-only,
        so the kernel cannot rewrite its connection file or the host's log.
        """
        if self.mode == "none":
            warnings.warn(UNSAFE_WARNING, UnsafeSandboxWarning, stacklevel=2)
            sys.stderr.write(UNSAFE_WARNING)
            env = dict(os.environ)
            env.pop("JPY_PARENT_PID", None)
            return LaunchPlan(kernel_cmd, env, isolation=["NONE: unsandboxed (explicit opt-in)"])
        self.check()
        root = os.geteuid() == 0
        cgroups = self._make_cgroups(session_dir.name)
        network = "loopback only" if self.egress_enabled else "no network"
        isolation = [
            f"bubblewrap: {network}, private pid/ipc/uts, read-only root",
            f"/tmp tmpfs {self.tmp_size // MIB} MiB, writable work folder {work_dir}",
            "clean environment, all capabilities dropped",
            *(self.egress_description() if self.egress_enabled else []),
        ]
        inner = self.egress_command(list(kernel_cmd), session_dir)
        if root:
            _chown_for_sandbox(session_dir, work_dir, socket_dir, self.sandbox_uid)
            inner = _as_sandbox_uid(self.sandbox_uid, work_dir, inner)
            isolation.append(f"uid {self.sandbox_uid}, no-new-privs, empty bounding set")
        bwrap_args = self._bwrap_args(session_dir, work_dir, socket_dir, root)
        prelude = join_cgroups_lines(cgroups)
        if cgroups:
            isolation.append(self._cgroup_description(cgroups))
        if self.seccomp and seccomp.supported():
            # bwrap reads the filter from a descriptor: the launch shell opens it.
            path = session_dir / "seccomp.bpf"
            path.write_bytes(seccomp.program())
            prelude.append(f"exec {SECCOMP_FD}< {shlex.quote(str(path))}")
            bwrap_args += ["--seccomp", str(SECCOMP_FD)]
            isolation.append(f"seccomp: {len(seccomp.DENIED_X86_64)} syscalls denied "
                             "(namespaces, ptrace, io_uring, bpf, perf, keyrings, mounts)")
        elif self.seccomp:
            isolation.append(f"seccomp: no filter for {platform.machine()} here")
        argv = [self.resolve_bwrap(), *bwrap_args, "--", *inner]
        argv = self._prlimit(bool(cgroups), isolation) + argv
        if prelude:
            argv = ["/bin/sh", "-c", "; ".join([*prelude, 'exec "$@"']), "codeact-sandbox", *argv]
        # bwrap's own init (pid 1 inside) keeps the environment bwrap starts with,
        # so bwrap itself gets a minimal one, not just the kernel.
        env = {"PATH": "/usr/bin:/bin"}
        return LaunchPlan(argv, env, cgroups, isolation)

    def _bwrap_args(
        self, session_dir: Path, work_dir: Path, socket_dir: Path | None, root: bool
    ) -> list[str]:
        args = [
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--hostname", "codeact-sandbox",
        ]  # fmt: skip
        if not root:
            args.append("--unshare-user")
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--size", str(self.tmp_size), "--tmpfs", "/tmp"]
        args += ["--perms", "1777", "--size", str(self.shm_size), "--tmpfs", "/dev/shm"]
        # Binds come after the tmpfs mounts so that a venv living under /tmp stays visible.
        ro_paths = _system_ro_paths([*self.extra_ro_binds, *self.egress_ro_paths()])
        # bwrap copies the host mode of the parent folders it creates (/root is
        # 0700), which would hide a Python under /root from the sandbox uid.
        for parent in _parents_to_create([*ro_paths, str(work_dir), str(session_dir)]):
            args += ["--perms", "0755", "--dir", parent]
        for path in ro_paths:
            if os.path.islink(path) and path.count("/") == 1:
                args += ["--symlink", os.readlink(path), path]
            else:
                args += ["--ro-bind-try", path, path]
        if socket_dir is None:
            args += ["--bind", str(session_dir), str(session_dir)]
        else:
            args += ["--ro-bind", str(session_dir), str(session_dir)]
            args += ["--bind", str(socket_dir), str(socket_dir)]
        # Bound after the session folder, so it stays writable when it lives inside it.
        if work_dir.resolve() != session_dir.resolve():
            args += ["--bind", str(work_dir), str(work_dir)]
        # As root, the command itself enters the work folder after the uid drop (plan).
        args += ["--chdir", "/" if root else str(work_dir)]
        args += ["--remount-ro", "/", "--cap-drop", "ALL"]
        if root:
            # Only what setpriv needs to switch to the sandbox uid and empty the
            # bounding set; the uid switch itself clears these capabilities.
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            args += ["--cap-add", "CAP_SETPCAP"]
        args += ["--clearenv"]
        for key, value in self.sandbox_env(work_dir).items():
            args += ["--setenv", key, value]
        return args

    def sandbox_env(self, work_dir: Path) -> dict[str, str]:
        """The complete environment of the kernel inside the sandbox."""
        env = {key: os.environ[key] for key in self.env_passthrough if key in os.environ}
        env.update(
            PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            HOME=str(work_dir),
            LANG=env.get("LANG", "C.UTF-8"),
            PYTHONNOUSERSITE="1",
            PYTHONDONTWRITEBYTECODE="1",
            MPLCONFIGDIR="/tmp/.matplotlib",
            XDG_CACHE_HOME="/tmp/.cache",  # fontconfig's and others' caches: not the work folder
            IPYTHONDIR="/tmp/.ipython",
            OPENBLAS_NUM_THREADS="1",
        )
        env.update(self.egress_env())
        env.update(self.extra_env)
        env.pop("JPY_PARENT_PID", None)
        return env

    def _prlimit(self, have_cgroup: bool, isolation: list[str]) -> list[str]:
        limits: list[str] = []
        address_space = self.address_space_limit
        if address_space < 0:
            address_space = self.memory_limit * (4 if have_cgroup else 1)
        if address_space > 0:
            limits.append(f"--as={address_space}")
            isolation.append(f"RLIMIT_AS {address_space / GIB:.1f} GiB")
        if self.cpu_seconds > 0:
            # A hard limit above the soft one: at the soft limit the kernel gets
            # SIGXCPU, which says why it died; soft == hard would be a bare SIGKILL.
            limits.append(f"--cpu={self.cpu_seconds}:{self.cpu_seconds + CPU_HARD_MARGIN}")
            isolation.append(f"RLIMIT_CPU {self.cpu_seconds} s (backstop)")
        if self.pids_limit > 0 and not have_cgroup:
            limits.append(f"--nproc={self.pids_limit}")
            isolation.append(f"RLIMIT_NPROC {self.pids_limit} (per uid)")
        return ["/usr/bin/prlimit", *limits, "--"] if limits else []

    # ---- cgroups --------------------------------------------------------------------

    def writable_cgroup_controllers(self) -> list[str]:
        if not self.use_cgroups:
            return []
        return [
            c
            for c in ("memory", "pids")
            if os.access(Path(self.cgroup_root) / c, os.W_OK)
            and (Path(self.cgroup_root) / c / "cgroup.procs").exists()
        ]

    def _make_cgroups(self, name: str) -> list[Path]:
        made: list[Path] = []
        for controller in self.writable_cgroup_controllers():
            limit = self.memory_limit if controller == "memory" else self.pids_limit
            if limit <= 0:
                continue
            path = Path(self.cgroup_root) / controller / "codeact" / name
            try:
                path.mkdir(parents=True, exist_ok=True)
                if controller == "memory":
                    (path / "memory.limit_in_bytes").write_text(str(limit))
                    try_write(path / "memory.memsw.limit_in_bytes", str(limit))
                else:
                    (path / "pids.max").write_text(str(limit))
            except OSError:
                remove_cgroup(path)
                continue
            made.append(path)
        return made

    def _cgroup_description(self, cgroups: list[Path]) -> str:
        parts = []
        for path in cgroups:
            if path.parent.parent.name == "memory":
                parts.append(f"memory {self.memory_limit / GIB:.1f} GiB")
            else:
                parts.append(f"pids {self.pids_limit}")
        return "cgroup v1: " + ", ".join(parts)

    def stale_cgroups(self) -> list[Path]:
        found: list[Path] = []
        for controller in ("memory", "pids"):
            base = Path(self.cgroup_root) / controller / "codeact"
            if base.is_dir():
                found.extend(p for p in base.iterdir() if p.is_dir())
        return found


def _as_sandbox_uid(uid: int, work_dir: Path, command: list[str]) -> list[str]:
    """``command`` run as ``uid``, with no capabilities and no way to gain any, from
    ``work_dir``."""
    return [
        "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--",
        # Enter the work folder only as the sandbox uid: bwrap (root without DAC
        # capabilities) could not enter a user's 0700 folder, and the sandbox uid reaches
        # it through its ACL entry, without owning it.
        "/bin/sh", "-c", 'cd -- "$0" && exec "$@"', str(work_dir), *command,
    ]


def _chown_for_sandbox(
    session_dir: Path, work_dir: Path, socket_dir: Path | None, uid: int
) -> None:
    # The connection file is 0600, and the socket folder and a work folder made inside
    # the session folder must be writable by the sandbox uid. Nothing else changes hands:
    # the session folder stays the host's (read-only inside), a user's work folder is
    # lent by WorkFolderLease, and contents are never touched.
    items = [session_dir / "kernel.json"]
    items.append(socket_dir if socket_dir is not None else session_dir)
    # The egress proxy's socket folder (0700, made by the host): only the sandbox uid
    # may connect, and it is read-only inside with the rest of the session folder.
    items.append(egress_socket_path(session_dir).parent)
    if _is_within(work_dir, session_dir) and work_dir.resolve() != session_dir.resolve():
        items.append(work_dir)
    for item in items:
        if os.path.lexists(item):
            os.chown(item, uid, uid, follow_symlinks=False)


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _parents_to_create(paths: list[str]) -> list[str]:
    parents: list[str] = []
    for path in paths:
        for parent in reversed(Path(path).parents):
            text = str(parent)
            if text not in ("/", "/tmp", "/dev", "/proc") and text not in parents:
                parents.append(text)
    return parents


def _system_ro_paths(extra: list[str]) -> list[str]:
    """Read-only binds: /usr, the Python installation, the venv, and a few /etc files."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
    python_dirs = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        str(Path(sys.executable).resolve().parent.parent),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
    }
    for candidate in sorted(python_dirs) + list(extra):
        real = str(Path(candidate).resolve())
        if not any(_is_within(Path(real), Path(p)) for p in paths if not os.path.islink(p)):
            paths.append(real)
    paths += [f for f in ETC_FILES if os.path.exists(f)]
    return paths


@functools.lru_cache(maxsize=8)
def _probe_bwrap(bwrap: str, root: bool) -> tuple[bool, str]:
    """Start a trivial sandbox once per process to prove bwrap works here."""
    args = [bwrap, "--unshare-net", "--unshare-pid", "--die-with-parent"]
    if not root:
        args.append("--unshare-user")
    args += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=10, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{exc}; {INSTALL_HINT}"
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"{bwrap} exited with status {proc.returncode}"
        hint = "point bwrap_path at a working bwrap, or (re)install it with " + (
            "`apt-get install bubblewrap`"
        )
        if not root:
            hint = (
                "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1 "
                "or user.max_user_namespaces>0) or the container forbids them; or " + hint
            )
        return False, f"{detail}. Fix: {hint}"
    return True, "ok"
