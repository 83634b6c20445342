"""Lending a user's work folder to the sandbox, and giving it back as it was.

A work folder the user names (``KernelSession.work_dir``, the launcher's ``--work-dir``)
is the user's: its owner never changes. When the host is root the kernel runs as the
sandbox uid, which gets one POSIX ACL entry (rwx) on the folder instead of the folder
itself; the kernel, not being the owner, can then neither chmod it nor change its ACL.
Where the filesystem has no ACLs, the folder is lent by ownership as a last resort.

Either way, what the folder was (owner, group, mode, ACL) is written down in the session
folder before anything changes, and given back at shutdown, or by the next session's
sweep when the owner was killed. A kernel running as the host user itself (non-root
hosts) may chmod the folder; giving the mode back undoes that too.

Every change goes through a descriptor opened with ``O_NOFOLLOW | O_DIRECTORY``, and
giving back checks the device and inode first: a path the kernel swapped for a symlink
or for another folder is never followed.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

ACL_XATTR = "system.posix_acl_access"
RECORD_NAME = "workdir-lease.json"
# Linux's POSIX ACL xattr format: a version, then (tag, permissions, id) entries.
_ACL_VERSION = 2
_ACL_ENTRY = struct.Struct("<HHI")
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_NO_ACLS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


@dataclass
class FolderState:
    """What a lent folder was, written down before it was lent."""

    path: str
    dev: int
    ino: int
    uid: int
    gid: int
    mode: int
    acl: str | None  # hex of the ACL xattr, None when it had none


def open_folder(path: str | Path) -> int:
    """A descriptor on the folder ``path`` itself; refuses a symlink in its place."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


class WorkFolderLease:
    """One user folder lent to the sandbox uid for one session."""

    def __init__(self, path: Path, session_dir: Path, sandbox_uid: int | None) -> None:
        self.path = path
        self.record = session_dir / RECORD_NAME
        self.sandbox_uid = sandbox_uid  # None: the kernel runs as the host user
        self.how = ""

    def lend(self) -> str:
        """Write the folder's state down, then give the sandbox uid access; say how."""
        fd = open_folder(self.path)
        try:
            state = _state(fd, str(self.path))
            _write_record(self.record, state)
            if self.sandbox_uid is None:
                self.how = "kept as it is (the kernel runs as the host user)"
            elif _add_acl_entry(fd, state, self.sandbox_uid):
                self.how = f"lent to uid {self.sandbox_uid} by an ACL entry; owner unchanged"
            else:
                os.fchown(fd, self.sandbox_uid, self.sandbox_uid)
                self.how = (f"lent to uid {self.sandbox_uid} by ownership (no ACLs on this "
                            "filesystem); given back at shutdown")
        finally:
            os.close(fd)
        return self.how

    def give_back(self) -> None:
        """Restore owner, mode and ACL as written down (idempotent)."""
        give_back_recorded(self.record)


def give_back_recorded(record: Path) -> bool:
    """Restore the folder described by ``record``, then remove the record.

    False when there was nothing to do: no record, or the folder is gone or is not the
    one that was lent (another inode at that path is left alone).
    """
    try:
        state = FolderState(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return False
    try:
        fd = open_folder(state.path)
    except OSError:
        record.unlink(missing_ok=True)
        return False
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (state.dev, state.ino):
            return False
        if (st.st_uid, st.st_gid) != (state.uid, state.gid):
            os.fchown(fd, state.uid, state.gid)
        _restore_acl(fd, state.acl)
        os.fchmod(fd, state.mode)  # after the ACL: writing an ACL rewrites the group bits
    finally:
        os.close(fd)
    record.unlink(missing_ok=True)
    return True


def _state(fd: int, path: str) -> FolderState:
    st = os.fstat(fd)
    try:
        acl: str | None = os.getxattr(fd, ACL_XATTR).hex()
    except OSError:
        acl = None
    return FolderState(path, st.st_dev, st.st_ino, st.st_uid, st.st_gid,
                       stat.S_IMODE(st.st_mode), acl)


def _write_record(record: Path, state: FolderState) -> None:
    # The session folder is the host's and read-only inside the sandbox; O_EXCL still
    # refuses to reuse whatever might be there.
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(state), fh)


def _add_acl_entry(fd: int, state: FolderState, uid: int) -> bool:
    """Give ``uid`` rwx on the folder through its access ACL; False without ACL support."""
    mode = state.mode
    entries = [(_USER_OBJ, (mode >> 6) & 7, _UNDEFINED_ID), (_USER, 7, uid),
               (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID), (_MASK, 7, _UNDEFINED_ID),
               (_OTHER, mode & 7, _UNDEFINED_ID)]
    if state.acl is not None:
        # Keep the named entries already there (but ours), with the same mask rule.
        kept = [e for e in _parse_acl(bytes.fromhex(state.acl)) if e[0] in (_USER, 0x08)
                and not (e[0] == _USER and e[2] == uid)]
        entries = sorted(entries[:1] + kept + entries[1:], key=lambda e: (e[0], e[2]))
    try:
        os.setxattr(fd, ACL_XATTR, _pack_acl(entries))
    except OSError as exc:
        if exc.errno in _NO_ACLS:
            return False
        raise
    return True


def _restore_acl(fd: int, acl: str | None) -> None:
    try:
        if acl is None:
            os.removexattr(fd, ACL_XATTR)
        else:
            os.setxattr(fd, ACL_XATTR, bytes.fromhex(acl))
    except OSError as exc:
        if exc.errno not in (*_NO_ACLS, errno.ENODATA):
            raise


def _pack_acl(entries: list[tuple[int, int, int]]) -> bytes:
    return struct.pack("<I", _ACL_VERSION) + b"".join(_ACL_ENTRY.pack(*e) for e in entries)


def _parse_acl(data: bytes) -> list[tuple[int, int, int]]:
    body = data[4:]
    return [_ACL_ENTRY.unpack_from(body, i) for i in range(0, len(body), _ACL_ENTRY.size)]
