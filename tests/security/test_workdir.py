"""Finding 1 (related): a user's ``--workdir`` and the host's clean-up of kernel-writable
folders.

A user's work folder used to be chowned to the sandbox uid for good, so a
``chmod 777`` by the kernel persisted after shutdown. Now the folder keeps its owner
(the sandbox uid gets an ACL entry, and the kernel enters the folder only after it
dropped to that uid), and whatever the kernel did to the folder's owner, mode or ACL is
undone at shutdown, or, if the owner was killed, by the next session's sweep.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from codeact_kernel import KernelSession

pytestmark = pytest.mark.timeout(240)

ACL = "system.posix_acl_access"


def snapshot(path: Path) -> tuple[int, int, int, bytes | None]:
    st = os.stat(path, follow_symlinks=False)
    try:
        acl: bytes | None = os.getxattr(path, ACL, follow_symlinks=False)
    except OSError:
        acl = None
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), acl


def user_folder(tmp_path: Path, uid: int, mode: int) -> Path:
    folder = tmp_path / "mywork"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    os.chown(folder, uid, uid)
    folder.chmod(mode)
    return folder


ATTACK = """
import os
open('made.txt', 'w').write('by the kernel')
print(open('notes.txt').read())
try:
    os.chmod('.', 0o777)
    print('chmod done')
except OSError as exc:
    print('chmod refused', type(exc).__name__)
print(os.getcwd())
"""


@pytest.mark.parametrize("mode", [0o755, 0o700], ids=oct)
@pytest.mark.parametrize("owner", ["host user", "another user"])
def test_user_workdir_keeps_its_owner_and_gets_its_mode_back(
    tmp_path: Path, runtime_dir: Path, owner: str, mode: int
) -> None:
    if owner == "another user" and os.geteuid() != 0:
        pytest.skip("only root can hand a folder to another user")
    uid = os.getuid() if owner == "host user" else 4321
    work = user_folder(tmp_path, uid, mode)
    before = snapshot(work)
    with KernelSession(runtime_dir=str(runtime_dir), work_dir=str(work), timeout=30) as s:
        result = s.execute(ATTACK)
        assert result.ok, result.reason
        assert "the user's own file" in result.stdout
        assert result.stdout.strip().endswith(str(work))  # it is the kernel's cwd
        # Lent, not given: the owner stays the user's while the kernel runs.
        assert os.stat(work).st_uid == uid
    assert snapshot(work) == before
    assert (work / "made.txt").read_text() == "by the kernel"


def test_shutdown_never_follows_links_the_kernel_planted(tmp_path: Path,
                                                          runtime_dir: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep me")
    victim.chmod(0o755)
    code = (
        "import os\n"
        f"os.symlink({str(victim)!r}, 'dir-link')\n"
        f"os.symlink({str(victim / 'keep.txt')!r}, 'file-link')\n"
        "os.makedirs('deep/er')\n"
        f"os.symlink({str(victim)!r}, 'deep/er/link')\n"
    )
    with KernelSession(runtime_dir=str(runtime_dir), timeout=30) as s:
        assert s.execute(code).ok
        work = s.work_path
    assert not work.exists()
    assert (victim / "keep.txt").read_text() == "keep me"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755


OWNER = """
import json, sys, time
from codeact_kernel import KernelSession
session = KernelSession(runtime_dir=sys.argv[1], work_dir=sys.argv[2], timeout=60).start()
result = session.execute("import os\\nos.chmod('.', 0o777)")
print(json.dumps({"session_dir": str(session.session_dir), "ok": result.ok}), flush=True)
time.sleep(600)
"""


def test_work_folder_of_a_killed_owner_is_given_back_by_the_next_session(
    tmp_path: Path, runtime_dir: Path
) -> None:
    work = user_folder(tmp_path, os.getuid(), 0o755)
    before = snapshot(work)
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(runtime_dir), str(work)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None
        info = json.loads(run_with_timeout(owner.stdout.readline, 120))
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=60)
    assert Path(info["session_dir"]).is_dir()  # a SIGKILLed owner cleans up nothing
    with KernelSession(runtime_dir=str(runtime_dir), timeout=60):
        assert snapshot(work) == before  # the sweep gave the folder back
    assert not Path(info["session_dir"]).exists()


def run_with_timeout(func: Any, seconds: float) -> Any:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", func()), daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert "value" in box, "timed out"
    return box["value"]
