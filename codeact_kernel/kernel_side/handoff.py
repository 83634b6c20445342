# Runs INSIDE the sandboxed kernel: rebuilds a value the host hands over (%%agent --in,
# a sub-agent's context). The host sends this text, then one assignment per value,
# ``name = _codeact_handoff(kind, where, payload, ...)``, with literal arguments
# (codeact_kernel.agent.handoff). ``where`` says how the bytes travel: "file" (payload
# is the path of a file the host wrote) or "inline" (payload is their base64 text).
# Formats: "parquet" (needs pyarrow), "table" (pandas' JSON table schema: pandas only),
# "npy" (numpy, never pickled objects), "json", and "pickle" (made by the host, which is
# trusted: this direction only; nothing from the kernel is ever unpickled on the host).
from typing import Any as _CodeActAny


def _codeact_handoff(kind: str, where: str, payload: str, series: bool = False,
                     name: _CodeActAny = None) -> _CodeActAny:
    import base64
    import io

    if where == "file":
        with open(payload, "rb") as f:
            data = f.read()
    else:
        data = base64.b64decode(payload)
    if kind == "parquet":
        import pandas

        value = pandas.read_parquet(io.BytesIO(data))
    elif kind == "table":
        import pandas

        value = pandas.read_json(io.StringIO(data.decode("utf-8")), orient="table")
    elif kind == "npy":
        import numpy

        return numpy.load(io.BytesIO(data), allow_pickle=False)
    elif kind == "json":
        import json

        return json.loads(data)
    elif kind == "pickle":
        import pickle

        return pickle.loads(data)
    else:
        raise ValueError(f"unknown hand-off format {kind!r}")
    if not series:
        return value
    column = value.iloc[:, 0]
    column.name = name
    return column


def _codeact_handoff_formats() -> "list[str]":
    """The table formats this kernel can read: parquet needs pandas and pyarrow."""
    import importlib.util

    def have(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules
            return False

    formats = ["table"] if have("pandas") else []
    return (["parquet"] if formats and have("pyarrow") else []) + formats
