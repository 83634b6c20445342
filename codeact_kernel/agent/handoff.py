"""Sending the notebook's variables into the agent's sandbox.

Host to sandbox, pickle would be acceptable (the host is trusted), but safe formats are
used where they exist so the sandbox needs no pickle of host objects either: Parquet for
DataFrames, .npy for arrays, JSON for plain data. A DataFrame goes as pandas' JSON table
schema (dtypes, index and names kept; only pandas needed) when pyarrow is missing on
either side. Pickle is the last resort for other objects, and only in this direction.
The kernel rebuilds each value with ``kernel_side/handoff.py``.

The bytes never go where the kernel can write: a planted symlink there would steer the
host's write onto any host file. They travel as a fresh file in the session's hand-off
folder (the host's, bound read-only in the sandbox: the manager's ``handoff_dir``),
created with ``O_EXCL | O_NOFOLLOW`` through a directory descriptor and removed once
read, or inline (kernels on another filesystem).
"""

from __future__ import annotations

import ast
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
from ..kernel_side import call, source, templates
from ..kernels.execution import ExecutionResult
from ..kernels.session import KernelSession
from ..sandbox.workdir import open_folder

MISSING_PACKAGE = ("ModuleNotFoundError", "ImportError")


def _encode(value: Any, formats: list[str]) -> tuple[str, bytes, tuple[Any, ...]]:
    """``value`` as (format, bytes, extra loader arguments); ``formats`` are the table
    formats the kernel reads (HANDOFF_FORMATS)."""
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind == "pandas.DataFrame":
        return (*_encode_frame(value, formats), ())
    if kind == "pandas.Series":
        # A column with a str name: Parquet and the table schema want one.
        name = value.name if isinstance(value.name, str | int | None) else str(value.name)
        return (*_encode_frame(value.to_frame(name="value"), formats), (True, name))
    if kind == "numpy.ndarray" and value.dtype != object:
        import numpy

        buffer = io.BytesIO()
        numpy.save(buffer, value, allow_pickle=False)
        return "npy", buffer.getvalue(), ()
    try:
        text = json.dumps(value)
        if json.loads(text) == value:
            return "json", text.encode(), ()
    except (TypeError, ValueError):
        pass
    return "pickle", pickle.dumps(value), ()


def _encode_frame(frame: Any, formats: list[str]) -> tuple[str, bytes]:
    if "parquet" in formats:
        try:
            buffer = io.BytesIO()
            frame.to_parquet(buffer)  # ImportError here: no pyarrow on the host
            return "parquet", buffer.getvalue()
        except Exception:  # the table format below carries the same data
            pass
    if "table" in formats:
        try:
            return "table", frame.to_json(orient="table", date_format="iso").encode()
        except Exception:  # e.g. a MultiIndex the table schema cannot express
            pass
    return "pickle", pickle.dumps(frame)


@contextmanager
def _handed_over(folder: Path | None, suffix: str, payload: bytes) -> Iterator[tuple[str, str]]:
    """How the kernel gets ``payload``: ("file", path) while in use, or ("inline", base64)."""
    if folder is None:
        yield "inline", base64.b64encode(payload).decode()
        return
    folder.mkdir(mode=0o711, exist_ok=True)
    # Unguessable and never listed (0711): other host users cannot find it either.
    name = f"{secrets.token_hex(16)}.{suffix}"
    dir_fd = open_folder(folder)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # whatever the umask: the sandbox uid reads it
            fh.write(payload)
        try:
            yield "file", str(folder / name)
        finally:
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


async def push_variables(session: KernelSession, variables: dict[str, Any]) -> list[str]:
    """Define each variable in the sandbox kernel under the same name."""
    for name in variables:
        if not name.isidentifier():
            raise HandoffError(f"--in: {name!r} is not a variable name")
    # The loader is sent again each time: code run since may have replaced it.
    asked = templates.HANDOFF_FORMATS
    probe = await session.async_execute(source("handoff.py"), silent=True, store_history=False,
                                        user_expressions={asked: asked})
    formats = _formats(probe.user_expressions.get(asked, {}))
    for name, value in variables.items():
        try:
            kind, payload, extra = _encode(value, formats)
        except Exception as exc:
            raise HandoffError(f"could not send {name} into the sandbox: encoding its "
                               f"{type(value).__name__} failed: {type(exc).__name__}: {exc}"
                               ) from exc
        with _handed_over(session.manager.handoff_dir, kind, payload) as (where, data):
            load = call("_codeact_handoff", kind, where, data, *extra)
            result = await session.async_execute(templates.ASSIGN.substitute(
                name=name, value=load), silent=True, store_history=False)
        if not result.ok:
            raise HandoffError(_failure(name, type(value).__name__, result))
    return list(variables)


def _formats(entry: dict[str, Any]) -> list[str]:
    """The kernel's answer to HANDOFF_FORMATS, read as data (it is untrusted)."""
    try:
        found = ast.literal_eval(entry["data"]["text/plain"]) if entry.get("status") == "ok" \
            else []
    except (KeyError, TypeError, ValueError, SyntaxError, MemoryError, RecursionError):
        found = []
    return [f for f in found if f in ("parquet", "table")] if isinstance(found, list) else []


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
