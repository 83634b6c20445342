"""Sending the notebook's variables into the agent's sandbox.

Host to sandbox, pickle would be acceptable (the host is trusted), but safe
formats are used where they exist so the sandbox needs no pickle of host
objects either: Parquet for DataFrames, .npy for arrays, JSON for plain data.
Pickle is the last resort for other objects, and only in this direction.

The bytes never go where the kernel can write: a planted symlink there would steer the
host's write onto any host file. They travel as a fresh file in the session's hand-off
folder (the host's, bound read-only in the sandbox: the manager's ``handoff_dir``),
created with ``O_EXCL | O_NOFOLLOW`` through a directory descriptor and removed once
read, or inline in the code that rebuilds them (kernels on another filesystem).
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import HandoffError
from ..kernels.execution import ExecutionResult
from ..kernels.session import KernelSession
from ..sandbox.workdir import open_folder

MISSING_PACKAGE = ("ModuleNotFoundError", "ImportError")


def _encode(value: Any) -> tuple[str, bytes, str]:
    """``value`` as (file suffix, bytes, kernel code that rebuilds it from ``{data}``)."""
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind in ("pandas.DataFrame", "pandas.Series"):
        frame = value.to_frame() if kind == "pandas.Series" else value
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        load = "__import__('pandas').read_parquet(__import__('io').BytesIO({data}))"
        return ".parquet", buffer.getvalue(), load + (
            ".iloc[:, 0]" if kind == "pandas.Series" else "")
    if kind == "numpy.ndarray" and value.dtype != object:
        import numpy

        buffer = io.BytesIO()
        numpy.save(buffer, value, allow_pickle=False)
        return ".npy", buffer.getvalue(), (
            "__import__('numpy').load(__import__('io').BytesIO({data}), allow_pickle=False)")
    try:
        text = json.dumps(value)
        if json.loads(text) == value:
            return ".json", text.encode(), "__import__('json').loads({data})"
    except (TypeError, ValueError):
        pass
    return ".pickle", pickle.dumps(value), "__import__('pickle').loads({data})"


@contextmanager
def _handed_over(folder: Path | None, suffix: str, payload: bytes) -> Iterator[str]:
    """Kernel code giving ``payload``'s bytes; a file in ``folder`` lives while in use."""
    if folder is None:
        yield f"__import__('base64').b64decode({base64.b64encode(payload).decode()!r})"
        return
    folder.mkdir(mode=0o711, exist_ok=True)
    # Unguessable and never listed (0711): other host users cannot find it either.
    name = secrets.token_hex(16) + suffix
    dir_fd = open_folder(folder)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # whatever the umask: the sandbox uid reads it
            fh.write(payload)
        try:
            yield f"open({str(folder / name)!r}, 'rb').read()"
        finally:
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


async def push_variables(session: KernelSession, variables: dict[str, Any]) -> list[str]:
    """Define each variable in the sandbox kernel under the same name."""
    for name in variables:
        if not name.isidentifier():
            raise HandoffError(f"--in: {name!r} is not a variable name")
    for name, value in variables.items():
        try:
            suffix, payload, load = _encode(value)
        except Exception as exc:
            raise HandoffError(f"could not send {name} into the sandbox: encoding its "
                               f"{type(value).__name__} failed: {type(exc).__name__}: {exc}"
                               ) from exc
        with _handed_over(session.manager.handoff_dir, suffix, payload) as data:
            result = await session.async_execute(f"{name} = " + load.format(data=data),
                                                 silent=True, store_history=False)
        if not result.ok:
            raise HandoffError(_failure(name, type(value).__name__, result))
    return list(variables)


def _failure(name: str, kind: str, result: ExecutionResult) -> str:
    head = f"could not send {name} ({kind}) into the sandbox: "
    if result.error is not None and result.error.ename in MISSING_PACKAGE:
        return (head + f"{result.reason}. The sandbox's Python lacks a package this value "
                "needs: install it for SandboxKernelManager.kernel_python, or send a plain "
                "type (e.g. df.to_dict('records')).")
    if result.error is not None:
        return (head + f"the kernel failed to rebuild it: {result.reason}. Code run earlier "
                "in this session may have replaced what the loader uses; start a fresh "
                "session with --new and send it again.")
    return head + (result.reason or f"the kernel answered {result.status!r}")
