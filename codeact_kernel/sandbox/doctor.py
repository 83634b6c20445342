"""``codeact doctor``: what isolation will a session get on this machine?

Every probe is real: bwrap is started, and a Python is run inside the exact
sandbox a kernel would get, to report what the kernel itself sees (uid,
capabilities, network, read-only root, environment).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SandboxUnavailable
from . import seccomp
from .cgroups import remove_cgroup
from .config import GIB, INSTALL_HINT, MIB, SandboxConfig
from .dirs import make_session_dir

# Runs inside the sandbox; it reports facts and never decides anything.
_INSIDE_PROBE = r"""
import json, os, socket
r = {"uid": os.getuid(), "env": sorted(os.environ)}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    if key in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
        r[key] = value.strip()
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1).close()
    r["network"] = "reachable"
except OSError:
    r["network"] = "none"
r["interfaces"] = [name for _, name in socket.if_nameindex()]
proxy = os.environ.get("HTTP_PROXY")
if proxy:  # egress: ask the proxy for a name no allow-list holds; it must refuse
    try:
        with socket.create_connection(("127.0.0.1", int(proxy.rsplit(":", 1)[1])), 5) as s:
            s.sendall(b"CONNECT codeact-doctor.invalid:443 HTTP/1.1\r\n\r\n")
            r["egress_proxy"] = s.recv(512).split(b"\r\n")[0].decode(errors="replace")
    except OSError as exc:
        r["egress_proxy"] = type(exc).__name__
try:
    open("/codeact-doctor-probe", "w").close()
    r["root_fs"] = "writable"
except OSError:
    r["root_fs"] = "read-only"
print(json.dumps(r))
"""


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok", "warn", "FAIL" or "info"
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"  [{self.status:>4}] {self.name}: {self.detail}"
        return line + (f"\n         fix: {self.fix}" if self.fix else "")


def doctor_report(config: SandboxConfig | None = None) -> tuple[str, bool]:
    """Probe the machine; return a plain-text report and whether the sandbox is usable."""
    config = config if config is not None else SandboxConfig()
    root = os.geteuid() == 0
    checks = [_check_platform(), *_check_bwrap(config)]
    bwrap_ok = all(c.status != "FAIL" for c in checks)
    checks += [_check_privileges(config, root), _check_userns(root), *_check_helpers(root)]
    checks.append(_check_cgroups(config))
    isolation: list[str] = []
    if bwrap_ok:
        inside, isolation = _check_inside(config)
        checks.append(inside)
    usable = all(c.status != "FAIL" for c in checks)
    lines = ["codeact doctor: the sandbox a kernel session will get", "", "Checks:"]
    lines += [c.render() for c in checks]
    lines += ["", "Limits:", *[f"  - {x}" for x in _limits(config)]]
    lines += ["", "Network egress:", *[f"  - {x}" for x in config.egress_description()]]
    if isolation:
        lines += ["", "Isolation of every kernel:", *[f"  - {x}" for x in isolation]]
    if config.mode == "none":
        lines += ["", "WARNING: SandboxConfig.mode is 'none': sessions run WITHOUT this sandbox."]
    verdict = "sandbox usable" if usable else "sandbox NOT usable: sessions will fail to start"
    lines += ["", f"Verdict: {verdict}."]
    return "\n".join(lines) + "\n", usable


def _check_platform() -> Check:
    system = platform.system()
    if system != "Linux":
        return Check("platform", "FAIL", f"{system}: bubblewrap needs Linux", "run on Linux")
    return Check(
        "platform", "ok", f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def _check_bwrap(config: SandboxConfig) -> list[Check]:
    try:
        path = config.resolve_bwrap()
    except SandboxUnavailable:
        where = f"at {config.bwrap_path}" if config.bwrap_path else "on PATH"
        return [Check("bubblewrap", "FAIL", f"bwrap not found {where}", INSTALL_HINT)]
    version = (_run([path, "--version"]) or "").strip() or "version unknown"
    found = Check("bubblewrap", "ok", f"{path} ({version})")
    try:
        _with_bwrap(config).check()
    except SandboxUnavailable as exc:
        fix = "" if "apt-get install" in str(exc) else INSTALL_HINT  # already named
        return [found, Check("bubblewrap starts", "FAIL", str(exc), fix)]
    return [found, Check("bubblewrap starts", "ok", "a trivial sandbox ran")]


def _check_privileges(config: SandboxConfig, root: bool) -> Check:
    if root:
        return Check(
            "privileges",
            "ok",
            f"running as root: the kernel is switched to uid {config.sandbox_uid} with setpriv "
            "(no-new-privs, empty capability bounding set); no user namespace is needed",
        )
    return Check(
        "privileges",
        "ok",
        f"running as uid {os.getuid()}: bwrap makes a user namespace and the kernel keeps your "
        "uid inside it, with no capabilities",
    )


def _check_userns(root: bool) -> Check:
    facts = []
    for sysctl in (
        "user/max_user_namespaces",
        "kernel/unprivileged_userns_clone",
        "kernel/apparmor_restrict_unprivileged_userns",
    ):
        value = _read(Path("/proc/sys") / sysctl)
        if value is not None:
            facts.append(f"{sysctl.replace('/', '.')}={value}")
    unshare = shutil.which("unshare")
    works: bool | None = None
    if unshare:
        cmd = [unshare, "--user", "/bin/true"]
        if root:  # ask as an unprivileged user: root can always make one
            cmd = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        works = _run(cmd, check=True) is not None
    detail = ", ".join(facts) or "no sysctl found"
    if works is not None:
        detail += f"; unprivileged creation {'works' if works else 'FAILS'}"
    if works is False and not root:
        fix = "sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000"
        return Check("user namespaces", "FAIL", detail, fix)
    status = "ok" if works else "info" if root else "warn"
    if root:
        detail += " (not needed as root)"
    return Check("user namespaces", status, detail)


def _check_helpers(root: bool) -> list[Check]:
    needed = ["/bin/sh", "/usr/bin/prlimit"] + (["/usr/bin/setpriv"] if root else [])
    missing = [p for p in needed if not os.access(p, os.X_OK)]
    if missing:
        fix = "apt-get install util-linux (setpriv, prlimit)"
        return [Check("helpers", "FAIL", f"missing {', '.join(missing)}", fix)]
    return [Check("helpers", "ok", ", ".join(needed))]


def _check_cgroups(config: SandboxConfig) -> Check:
    base = Path(config.cgroup_root)
    if (base / "cgroup.controllers").exists():
        layout = "v2 (unified)"
    elif (base / "unified").is_dir():
        layout = "hybrid (v1 controllers + v2 unified)"
    elif base.is_dir():
        layout = "v1"
    else:
        layout = "not mounted"
    writable = config.writable_cgroup_controllers()
    if not config.use_cgroups:
        return Check("cgroups", "info", f"{layout}; disabled by SandboxConfig.use_cgroups")
    if writable:
        return Check("cgroups", "ok", f"{layout}; writable v1 controllers: {', '.join(writable)}")
    return Check(
        "cgroups",
        "warn",
        f"{layout}; no writable v1 memory/pids controller, so rlimits are used instead",
        "run as root on a host with v1 memory/pids controllers for per-kernel cgroups",
    )


def _limits(config: SandboxConfig) -> list[str]:
    controllers = set(config.writable_cgroup_controllers())
    lines = []
    if config.memory_limit > 0 and "memory" in controllers:
        lines.append(f"memory: {config.memory_limit / GIB:.1f} GiB by a memory cgroup (OOM kill)")
    elif config.memory_limit > 0:
        lines.append(f"memory: {config.memory_limit / GIB:.1f} GiB by RLIMIT_AS (MemoryError)")
    else:
        lines.append("memory: unlimited (SandboxConfig.memory_limit=0)")
    if config.pids_limit > 0:
        how = "a pids cgroup" if "pids" in controllers else "RLIMIT_NPROC (counted per uid)"
        lines.append(f"processes and threads: {config.pids_limit} by {how}")
    else:
        lines.append("processes and threads: unlimited (SandboxConfig.pids_limit=0)")
    if config.cpu_seconds > 0:
        lines.append(f"CPU time: {config.cpu_seconds} s over the kernel's life (RLIMIT_CPU)")
    lines.append(
        f"/tmp: {config.tmp_size // MIB} MiB tmpfs; /dev/shm: {config.shm_size // MIB} MiB"
    )
    lines.append("per-cell wall clock: the session's timeout (interrupt, then restart)")
    return lines


def _check_inside(config: SandboxConfig) -> tuple[Check, list[str]]:
    """Run a probe in the very sandbox a kernel gets and report what it sees."""
    sandbox = _with_bwrap(config)
    runtime = Path(tempfile.gettempdir()) / f"codeact-sessions-{os.getuid()}"
    session_dir = make_session_dir(runtime)
    work = session_dir / "work"
    work.mkdir(mode=0o755)
    cgroups: list[Path] = []
    egress = None
    try:
        egress = sandbox.start_egress_proxy(session_dir)
        plan = sandbox.plan([sys.executable, "-I", "-c", _INSIDE_PROBE], session_dir, work)
        cgroups = plan.cgroups
        out = _run(plan.argv, env=plan.env, cwd=str(work), check=True)
        if out is None:
            return Check("inside the sandbox", "FAIL", "the probe did not run"), []
        # The probe's own folder is no concern of the reader's.
        isolation = [x.replace(str(work), "<session folder>/work") for x in plan.isolation]
        filtered = sandbox.seccomp and seccomp.supported()
        seen = json.loads(out.strip().splitlines()[-1])
        return _judge_inside(seen, filtered, egress is not None), isolation
    except (SandboxUnavailable, ValueError, IndexError) as exc:
        return Check("inside the sandbox", "FAIL", f"probe failed: {exc}"), []
    finally:
        if egress is not None:
            egress.stop()
        for path in cgroups:
            remove_cgroup(path)
        shutil.rmtree(session_dir, ignore_errors=True)


def _judge_inside(seen: dict[str, Any], filtered: bool, egress: bool) -> Check:
    problems = []
    if egress and not str(seen.get("egress_proxy", "")).startswith("HTTP/1.1 403"):
        problems.append(f"the egress proxy did not answer inside ({seen.get('egress_proxy')})")
    if filtered and seen.get("Seccomp") != "2":
        problems.append("the syscall filter is not applied")
    if seen.get("CapEff") != "0000000000000000":
        problems.append(f"CapEff {seen.get('CapEff')}")
    if seen.get("network") != "none":
        problems.append("network reachable")
    if seen.get("root_fs") != "read-only":
        problems.append("root filesystem writable")
    detail = (
        f"uid {seen.get('uid')}, CapEff {seen.get('CapEff')}, NoNewPrivs "
        f"{seen.get('NoNewPrivs')}, seccomp mode {seen.get('Seccomp')}, network "
        f"{seen.get('network')} (interfaces: "
        f"{', '.join(seen.get('interfaces', [])) or 'none'}), root fs {seen.get('root_fs')}, "
        f"environment {', '.join(seen.get('env', []))}"
    )
    if egress:
        detail += f"; egress proxy refuses a name off the list: {seen.get('egress_proxy')}"
    if problems:
        return Check("inside the sandbox", "FAIL", f"{detail}; UNSAFE: {', '.join(problems)}")
    return Check("inside the sandbox", "ok", detail)


def _with_bwrap(config: SandboxConfig) -> SandboxConfig:
    # The doctor reports on the sandbox even when the configuration opts out of it.
    values = {name: getattr(config, name) for name in config.trait_names(config=True)}
    values["mode"] = "bwrap"
    return SandboxConfig(**values)


def _run(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
    check: bool = False,
) -> str | None:  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if check and proc.returncode != 0:
        return None
    return proc.stdout


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit status 0 when the sandbox is usable, 1 otherwise."""
    del argv  # no options yet; configuration comes through SandboxConfig
    report, usable = doctor_report()
    sys.stdout.write(report)
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())
