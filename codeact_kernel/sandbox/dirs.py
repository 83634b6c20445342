"""Session folders, and the sweep of what killed owners left behind.

Kept free of jupyter_client, zmq and nbformat: the kernelspec launcher imports
this on every kernel start, before the kernel is spawned.

A session folder is named ``s<owner pid>-<random>``. The owner's pid in the
name is what lets any later process judge the folder, and the cgroups named
after it, stale once that owner is gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .cgroups import release_cgroup
from .config import SandboxConfig
from .workdir import RECORD_NAME, give_back_recorded

log = logging.getLogger(__name__)


def default_runtime_dir() -> str:
    """Where session folders go unless configured: one folder per host uid."""
    return os.path.join(tempfile.gettempdir(), f"codeact-sessions-{os.getuid()}")


def make_session_dir(runtime_dir: Path) -> Path:
    """A fresh session folder under ``runtime_dir``, owned by this process."""
    runtime_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"s{os.getpid()}-", dir=runtime_dir))
    # Traversable, not listable: bwrap (root, capabilities dropped) must reach
    # the work folder inside before it switches to the sandbox uid.
    path.chmod(0o711)
    return path


def remove_tree(path: Path) -> None:
    """Remove a folder the kernel could write into, never following a link it planted.

    shutil.rmtree walks with directory descriptors and O_NOFOLLOW where the platform
    allows (Linux does); where it cannot, the folder is left in place rather than risk
    deleting through a symlink into the host.
    """
    if not shutil.rmtree.avoids_symlink_attacks:
        log.warning("not removing %s: this platform's rmtree could follow symlinks", path)
        return
    shutil.rmtree(path, ignore_errors=True)


def owner_alive(name: str) -> bool:
    """Whether the process that made the session folder (or cgroup) ``name`` still runs."""
    try:
        pid = int(name[1:].split("-", 1)[0])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # not ours to judge
    return True


def release_cgroups(paths: Iterable[Path]) -> None:
    """Kill what is left in each cgroup and remove it (bounded wait per cgroup)."""
    for path in paths:
        release_cgroup(path)


def sweep_stale_sessions(runtime_dir: Path, sandbox: SandboxConfig) -> list[str]:
    """Remove session folders and cgroups left behind by processes that were killed."""
    swept: list[str] = []
    if runtime_dir.is_dir():
        for path in runtime_dir.iterdir():
            if path.name.startswith("s") and not owner_alive(path.name):
                # A work folder lent by the killed owner goes back to its user first.
                give_back_recorded(path / RECORD_NAME)
                remove_tree(path)
                swept.append(path.name)
    release_cgroups(c for c in sandbox.stale_cgroups() if not owner_alive(c.name))
    return swept
