"""Values handed into the sandbox (%%agent --in, a sub-agent's context), into real kernels.

The DataFrame formats: Parquet when both sides have pyarrow, pandas' JSON table schema
when either lacks it (tested with a real Python environment that has no pyarrow).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from traitlets.config import Config

from codeact_kernel import KernelSession
from codeact_kernel.agent.handoff import _encode, push_variables
from codeact_kernel.errors import CodeActError

REPO = Path(__file__).parents[2]
FRAME = pd.DataFrame(
    {"when": pd.to_datetime(["2024-01-02", "2024-03-04", "2024-05-06"]),
     "city": pd.Categorical(["Lyon", "Nice", "Lyon"]), "n": [1, 2, 3],
     "x": [0.5, None, 2.0]},
    index=pd.Index([10, 20, 30], name="id"))
# What the kernel reports about what it received: compared with the same on the host.
DESCRIBE = (
    "import json\n"
    "print(json.dumps({'kinds': {c: t.kind for c, t in frame.dtypes.items()},\n"
    "                  'category': str(frame['city'].dtype), 'index': frame.index.name,\n"
    "                  'rows': json.loads(frame.reset_index().to_json(orient='values',\n"
    "                                                                date_format='iso')),\n"
    "                  'series': [counts.name, counts.tolist()], 'array': grid.tolist(),\n"
    "                  'plain': plain}))\n"
)


def expected() -> dict[str, Any]:
    return {"kinds": {c: t.kind for c, t in FRAME.dtypes.items()}, "category": "category",
            "index": "id",
            "rows": json.loads(FRAME.reset_index().to_json(orient="values", date_format="iso")),
            "series": ["count", [1, 2, 3]], "array": [[1, 2], [3, 4]],
            "plain": {"a": [1, "b"]}}


def values() -> dict[str, Any]:
    return {"frame": FRAME, "counts": FRAME["n"].rename("count"),
            "grid": np.array([[1, 2], [3, 4]]), "plain": {"a": [1, "b"]}}


def received(session: KernelSession) -> dict[str, Any]:
    result = session.execute(DESCRIBE)
    assert result.ok, result.error.text if result.error else result.reason
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def no_pyarrow_config(python: Path, runtime_dir: Path) -> Config:
    config = Config()
    config.SandboxKernelManager.kernel_python = str(python)
    config.KernelSession.runtime_dir = str(runtime_dir)
    # The environment, and the packages its site-packages links to.
    config.SandboxConfig.extra_ro_binds = [str(python.parents[2]),
                                           str(Path(pd.__file__).resolve().parents[1])]
    return config


def test_values_arrive_with_their_types(session: KernelSession) -> None:
    assert asyncio.run(push_variables(session, values())) == ["frame", "counts", "grid",
                                                              "plain"]
    assert received(session) == expected()
    assert _encode(FRAME, ["parquet", "table"])[0] == "parquet"  # both sides have pyarrow


def test_a_dataframe_reaches_a_kernel_without_pyarrow(python_without_pyarrow: Path,
                                                      runtime_dir: Path) -> None:
    config = no_pyarrow_config(python_without_pyarrow, runtime_dir)
    with KernelSession(config=config, timeout=60) as session:
        missing = session.execute("import pyarrow")
        assert missing.error is not None and missing.error.ename == "ModuleNotFoundError"
        asyncio.run(push_variables(session, values()))
        assert received(session) == expected()


def test_a_host_without_pyarrow_sends_a_dataframe_too(python_without_pyarrow: Path,
                                                      runtime_dir: Path) -> None:
    # The whole host side runs on the Python without pyarrow (and so does its kernel).
    script = (
        "import asyncio, json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from traitlets.config import Config\n"
        "from codeact_kernel import KernelSession\n"
        "from codeact_kernel.agent.handoff import push_variables\n"
        "from tests.agent.test_handoff import DESCRIBE, no_pyarrow_config, values\n"
        "from pathlib import Path\n"
        "config = no_pyarrow_config(Path(sys.executable), Path(sys.argv[2]))\n"
        "with KernelSession(config=config, timeout=60) as session:\n"
        "    asyncio.run(push_variables(session, values()))\n"
        "    print(session.execute(DESCRIBE).stdout)\n"
    )
    out = subprocess.run([str(python_without_pyarrow), "-c", script, str(REPO),
                          str(runtime_dir)], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected()


def test_a_bad_name_is_refused_before_anything_is_sent(session: KernelSession) -> None:
    with pytest.raises(CodeActError, match="not a variable name"):
        asyncio.run(push_variables(session, {"ok": 1, "not ok": 2}))
    assert session.execute("print('ok' in dir())").stdout.strip() == "False"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
