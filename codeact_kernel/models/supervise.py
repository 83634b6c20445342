"""A child process that cannot outlive this one, in its own process group.

Used for the local model's llama-cpp server (``models.local.LocalModelServer``), but it
knows nothing about models: any argv, its output appended to a log file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# The supervisor sits between us and the server. It ignores SIGTERM/SIGINT, so
# stop()'s killpg(SIGTERM) reaches the server for a clean exit, and the supervisor then
# exits with the server's status. It watches a pipe whose write end only this process
# holds: EOF means this process died (however: SIGKILL, OOM, crash) and the whole group is
# killed. A pipe, not PR_SET_PDEATHSIG in our preexec_fn, because PDEATHSIG fires when the
# *thread* that forked exits, and the agent starts us from an asyncio.to_thread worker.
# The supervisor is single-threaded, so PDEATHSIG on the server is a safe second guard.
_SUPERVISOR = r"""
import ctypes, os, select, signal, subprocess, sys
fd, cmd, me = int(sys.argv[1]), sys.argv[2:], os.getpid()
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
def tie():
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != me:
        os._exit(1)
child = subprocess.Popen(cmd, preexec_fn=tie, pass_fds=())
while True:
    ready, _, _ = select.select([fd], [], [], 0.5)
    if ready and not os.read(fd, 1):
        os.killpg(0, signal.SIGKILL)
    if child.poll() is not None:
        code = child.returncode
        sys.exit(code if code >= 0 else 128 - code)
"""


class SupervisedProcess:
    """A command run in its own process group that cannot outlive this process.

    ``stop()`` sends SIGTERM to the group, waits up to ``grace`` seconds, then SIGKILLs
    what is left; the supervisor stays unreaped until then, so its pid (the group id)
    cannot be reused under us.
    """

    def __init__(self, argv: Sequence[str], log_path: str | os.PathLike[str],
                 env: Mapping[str, str] | None = None) -> None:
        read_fd, self._alive_fd = os.pipe()
        try:
            with open(log_path, "ab") as log_file:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", _SUPERVISOR, str(read_fd), *argv],
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    pass_fds=(read_fd,), start_new_session=True,
                    env=None if env is None else dict(env),
                )
        except BaseException:
            os.close(self._alive_fd)
            raise
        finally:
            os.close(read_fd)
        self.pid = self._proc.pid
        self.returncode: int | None = None

    def exited(self) -> bool:
        """True once the supervisor (hence the command) has exited; does not reap it."""
        if self.returncode is not None:
            return True
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def group_pids(self) -> list[int]:
        """Live (non-zombie) processes in the group, read from /proc."""
        return group_pids(self.pid)

    def stop(self, grace: float = 5.0) -> None:
        if self.returncode is not None:
            return
        _killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not self.exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        _killpg(self.pid, signal.SIGKILL)  # stragglers; the pgid is still ours
        self.returncode = self._proc.wait()
        os.close(self._alive_fd)
        deadline = time.monotonic() + grace
        while group_pids(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            pids.append(int(entry.name))
    return pids


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tail_text(path: Path, max_bytes: int = 4000, max_lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-max_lines:])
