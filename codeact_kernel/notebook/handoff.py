"""Sending the notebook's variables into the agent's sandbox.

Host to sandbox, pickle would be acceptable (the host is trusted), but safe
formats are used where they exist so the sandbox needs no pickle of host
objects either: Parquet for DataFrames, .npy for arrays, JSON for plain data.
Pickle is the last resort for other objects, and only in this direction.
The bytes travel as a file in the work folder when the kernel shares it, else
inline in the code that rebuilds them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
from typing import Any

from ..errors import CodeActError
from ..kernels.session import KernelSession


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


def _data_source(session: KernelSession, name: str, suffix: str, payload: bytes) -> str:
    """Kernel code giving ``payload``'s bytes: a file in the shared work folder, or inline
    for a kernel on another filesystem (a gateway's, a container's)."""
    if not session.shares_work_folder:
        return f"__import__('base64').b64decode({base64.b64encode(payload).decode()!r})"
    folder = session.work_path / ".codeact" / "in"
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    path = folder / f"{name}{suffix}"
    path.write_bytes(payload)
    os.chmod(path, 0o644)  # the sandbox uid reads it
    return f"open({str(path)!r}, 'rb').read()"


async def push_variables(session: KernelSession, variables: dict[str, Any]) -> list[str]:
    """Define each variable in the sandbox kernel under the same name."""
    lines = []
    for name, value in variables.items():
        if not name.isidentifier():
            raise CodeActError(f"--in: {name!r} is not a variable name")
        suffix, payload, load = _encode(value)
        lines.append(f"{name} = " + load.format(data=_data_source(session, name, suffix, payload)))
    result = await session.async_execute("\n".join(lines), silent=True, store_history=False)
    if not result.ok:
        raise CodeActError(
            f"could not send {', '.join(variables)} into the sandbox: {result.reason}. "
            "The sandbox's Python may lack the package the value needs (e.g. pandas)."
        )
    return list(variables)
