"""Sending the notebook's variables into the agent's sandbox.

Host to sandbox, pickle would be acceptable (the host is trusted), but safe
formats are used where they exist so the sandbox needs no pickle of host
objects either: Parquet for DataFrames, .npy for arrays, JSON for plain data.
Pickle is the last resort for other objects, and only in this direction.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

from .errors import CodeActError
from .session import KernelSession


def _write(folder: Path, name: str, value: Any) -> str:
    """Write ``value`` to the hand-off folder; return the kernel code that loads it."""
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind in ("pandas.DataFrame", "pandas.Series"):
        frame = value.to_frame() if kind == "pandas.Series" else value
        path = folder / f"{name}.parquet"
        frame.to_parquet(path)
        load = f"__import__('pandas').read_parquet({str(path)!r})"
        return load + (".iloc[:, 0]" if kind == "pandas.Series" else "")
    if kind == "numpy.ndarray" and value.dtype != object:
        import numpy

        path = folder / f"{name}.npy"
        numpy.save(path, value, allow_pickle=False)
        return f"__import__('numpy').load({str(path)!r}, allow_pickle=False)"
    try:
        path = folder / f"{name}.json"
        path.write_text(json.dumps(value))
        if json.loads(path.read_text()) == value:
            return f"__import__('json').loads(open({str(path)!r}).read())"
    except (TypeError, ValueError):
        pass
    path = folder / f"{name}.pickle"
    path.write_bytes(pickle.dumps(value))
    return f"__import__('pickle').loads(open({str(path)!r}, 'rb').read())"


async def push_variables(session: KernelSession, variables: dict[str, Any]) -> list[str]:
    """Define each variable in the sandbox kernel under the same name."""
    folder = session.work_path / ".codeact" / "in"
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    lines = []
    for name, value in variables.items():
        if not name.isidentifier():
            raise CodeActError(f"--in: {name!r} is not a variable name")
        lines.append(f"{name} = {_write(folder, name, value)}")
    for item in folder.iterdir():
        os.chmod(item, 0o644)
    result = await session.async_execute("\n".join(lines), silent=True, store_history=False)
    if not result.ok:
        raise CodeActError(
            f"could not send {', '.join(variables)} into the sandbox: {result.reason}. "
            "The sandbox's Python may lack the package the value needs (e.g. pandas)."
        )
    return list(variables)
