"""Per-kernel cgroups (v1 memory and pids): joining, counting events, releasing,
and telling from them which limit killed a kernel.

No heavy imports: the kernelspec launcher and the session-folder sweep use it.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path

MIB = 1024**2


@dataclass(frozen=True)
class Counters:
    """cgroup event counts read before a cell, to tell what the cell itself caused."""

    oom_kills: int
    pids_max: int | None


def read_counters(cgroups: list[Path]) -> Counters:
    return Counters(
        oom_kills=cgroup_counter(cgroups, "memory", "memory.oom_control", "oom_kill") or 0,
        pids_max=cgroup_counter(cgroups, "pids", "pids.events", "max"),
    )


def death_cause(before: Counters, after: Counters, returncode: int | None,
                memory_limit: int) -> str:
    """Why a sandboxed kernel died, in words for the model and the trace."""
    # Compared with the count before the cell: the cgroup may outlive one kernel.
    if after.oom_kills > before.oom_kills:
        return (
            "killed by the out-of-memory killer at the memory limit of "
            f"{memory_limit / MIB:.0f} MiB"
        )
    if returncode is None:
        return "exit status unknown"
    # bwrap reports a kernel killed by signal N as exit status 128 + N.
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum == signal.SIGXCPU:
        return "killed by the CPU-time limit (SIGXCPU)"
    if signum > 0:
        name = signal.Signals(signum).name if signum in signal.valid_signals() else signum
        return f"killed by signal {name}"
    return f"exit status {returncode}"


def remove_cgroup(path: Path) -> None:
    """Remove an empty cgroup; a cgroup that still has members stays (see release_cgroup)."""
    try:
        path.rmdir()
    except OSError:
        pass


def kill_cgroup_members(path: Path) -> bool:
    """SIGKILL every process in a cgroup; False once it is empty (or gone)."""
    try:
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return False
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return bool(pids)


def release_cgroup(path: Path, wait: float = 2.0) -> None:
    """Kill what is left in a cgroup, wait (bounded) for it to empty, and remove it.

    Killing bwrap does not make the sandbox's processes vanish at once: its
    init and the kernel die asynchronously, and rmdir fails while they exist.
    """
    deadline = time.monotonic() + wait
    while kill_cgroup_members(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    remove_cgroup(path)


def cgroup_counter(cgroups: list[Path], controller: str, filename: str, key: str) -> int | None:
    """A ``key value`` line of a cgroup file (memory.oom_control, pids.events), if present."""
    for path in cgroups:
        if path.parent.parent.name == controller:
            try:
                for line in (path / filename).read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
            except (OSError, ValueError):
                return None
    return None


def process_count(cgroups: list[Path]) -> int | None:
    """The processes in a kernel's cgroup, as the host counts them (the kernel cannot
    misreport this), or None without a cgroup."""
    for path in cgroups:
        try:
            return len((path / "cgroup.procs").read_text().split())
        except OSError:
            continue
    return None


def try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass


def join_cgroups_lines(cgroups: list[Path]) -> list[str]:
    """Shell lines that move the shell itself into ``cgroups``; it then execs the kernel's
    launch, so the kernel is limited from its first instruction with no race."""
    return [f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))}" for p in cgroups]
