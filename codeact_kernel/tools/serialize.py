"""Host side of the safe value formats that cross the sandbox boundary.

The codec itself lives in ``kernel_side/codec.py`` because the kernel runs the
very same text. Nothing here ever unpickles: DataFrames travel as Parquet,
arrays as ``.npy`` read with ``allow_pickle=False``, figures as PNG, and
anything else as its repr text.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import Any

from ..kernel_side import codec, source

FINAL_ANSWER = "final_answer"

_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
_short.maxlist = 8
_short.maxdict = 8
_short.maxlevel = 3


@dataclass
class FinalAnswer:
    """The value given to ``final_answer`` in the kernel, rebuilt on the host.

    ``kind`` says how it crossed: "json", "dataframe", "series", "ndarray",
    "png" (``value`` is the PNG bytes), "bytes" or "text" (``value`` is the
    repr of an object that has no safe format; ``type_name`` names its type).
    """

    value: Any
    kind: str
    notes: list[str] = field(default_factory=list)
    type_name: str = ""

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def host_accept() -> list[str]:
    """The formats this host can rebuild, announced to the kernel."""
    return codec.local_accept()


def encode_value(value: Any, accept: list[str]) -> tuple[Any, list[bytes], list[str]]:
    """Encode a tool result for a kernel that can rebuild the ``accept`` formats."""
    encoder = codec.Encoder([a for a in accept if a in codec.ACCEPT_ALL])
    obj = encoder.encode(value)
    return obj, encoder.blobs, encoder.notes


def decode_final_answer(
    obj: Any, blobs: list[bytes], notes: list[str], max_bytes: int | None = None,
    limit_name: str = "Agent.max_answer_bytes",
) -> FinalAnswer:
    """Rebuild a final answer sent by the kernel (untrusted: raises ValueError if bad, or
    if its Parquet/.npy blobs would decode to more than ``max_bytes``)."""
    try:
        value = codec.Decoder(blobs, max_bytes, limit_name).decode(obj)
    except ValueError:
        raise
    except Exception as exc:  # pyarrow/numpy reject malformed bytes with many types
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    kind = codec.kind_of(obj)
    type_name = str(obj.get("type", "")) if kind == "text" and isinstance(obj, dict) else ""
    return FinalAnswer(value, kind, [str(n) for n in notes][:20], type_name)


def summarize(value: Any, width: int = 200) -> str:
    """A short, never-failing repr for call records and logs."""
    try:
        if hasattr(value, "shape") and hasattr(value, "dtypes") and hasattr(value, "columns"):
            text = f"DataFrame shape={tuple(value.shape)} columns={list(value.columns)[:10]}"
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            text = f"{type(value).__name__} shape={tuple(value.shape)} dtype={value.dtype}"
        else:
            text = _short.repr(value)
    except Exception as exc:  # a broken __repr__ must not break recording
        text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


def kernel_source(extra: tuple[str, ...] = ()) -> str:
    """The text of the kernel-side RPC client: the codec, the client, tool namespaces and
    search (toolspace.py), then ``extra`` files of kernel_side/ (another transport's client)."""
    names = ("codec.py", "rpc.py", "toolspace.py", *extra)
    parts = [source(name) for name in names]
    return "\n\n".join(parts)
