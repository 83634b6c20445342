# The value codec shared by both ends of the tool RPC.
#
# This file is imported on the host (codeact_kernel.tools.serialize) AND shipped as
# text into the sandboxed kernel, where codeact_kernel cannot be imported. So it
# uses only the standard library at import time, imports numpy/pandas/pyarrow
# lazily, and has no `from __future__` line (it is concatenated with rpc.py).
#
# Wire form of a value: plain JSON, where a dict {"$codeact": KIND, ...} stands
# for a value JSON cannot carry. Binary payloads travel as extra ZMQ frames and
# are referenced by index ("blob"). Every format is declarative (Parquet, .npy
# without pickle, PNG, text): nothing is ever unpickled on either side.
import base64
import io
import json
import math
from typing import Any

MARK = "$codeact"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Formats a receiver can rebuild; the sender only uses those the receiver accepts.
ACCEPT_ALL = ("parquet", "npy", "pandas", "numpy")
TEXT_LIMIT = 100_000


def local_accept() -> list[str]:
    """The formats this process can decode (checked without importing them)."""
    import importlib.util

    have = {name: importlib.util.find_spec(name) is not None for name in ("numpy", "pandas")}
    have["pyarrow"] = importlib.util.find_spec("pyarrow") is not None
    accept = []
    if have["pandas"] and have["pyarrow"]:
        accept.append("parquet")
    if have["numpy"]:
        accept += ["npy", "numpy"]
    if have["pandas"]:
        accept.append("pandas")
    return accept


class Encoder:
    """Turns a value into (JSON-able object, blobs, notes) for the given receiver."""

    def __init__(self, accept: "list[str] | tuple[str, ...]") -> None:
        self.accept = set(accept)
        self.blobs: list[bytes] = []
        self.notes: list[str] = []

    def encode(self, value: Any) -> Any:
        # Fast path: plain JSON with nothing that could be mistaken for a marker.
        if _json_exact(value):
            return value
        return self._walk(value, 0)

    def _blob(self, kind: str, data: bytes, **extra: Any) -> dict[str, Any]:
        self.blobs.append(data)
        return {MARK: kind, "blob": len(self.blobs) - 1, **extra}

    def _walk(self, value: Any, depth: int) -> Any:
        if depth > 100:
            raise ValueError("value is nested more than 100 levels deep")
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {MARK: "float", "value": repr(value)}
        if isinstance(value, dict):
            return self._dict(value, depth)
        if isinstance(value, (list, tuple)):
            return [self._walk(v, depth + 1) for v in value]
        if isinstance(value, (set, frozenset)):
            self.notes.append(f"a {type(value).__name__} was sent as a list")
            items = list(value)
            try:
                items.sort()
            except TypeError:
                pass
            return [self._walk(v, depth + 1) for v in items]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._blob("bytes", bytes(value))
        return self._special(value, depth)

    def _dict(self, value: "dict[Any, Any]", depth: int) -> Any:
        if not all(isinstance(k, str) for k in value):
            self.notes.append("dict keys that were not str were sent as str")
        out = {str(k): self._walk(v, depth + 1) for k, v in value.items()}
        if MARK in out:  # escape user data that looks like a marker
            return {MARK: "dict", "items": [[k, v] for k, v in out.items()]}
        return out

    def _special(self, value: Any, depth: int) -> Any:
        module = type(value).__module__.split(".")[0]
        if module == "numpy":
            return self._numpy(value, depth)
        if module == "pandas":
            if hasattr(value, "columns") and hasattr(value, "to_parquet"):
                return self._frame(value, "dataframe")
            if hasattr(value, "to_frame") and hasattr(value, "dtype"):
                name = value.name
                frame = value.to_frame(name="value")
                encoded = self._frame(frame, "series")
                encoded["name"] = self._walk(name, depth + 1) if _jsonable(name) else str(name)
                return encoded
        png = _to_png(value)
        if png is not None:
            return self._blob("png", png)
        import datetime
        import decimal
        import uuid

        if isinstance(value, (datetime.date, datetime.time)):
            self.notes.append(f"a {type(value).__name__} was sent as ISO text")
            return value.isoformat()
        if isinstance(value, (decimal.Decimal, uuid.UUID)):
            self.notes.append(f"a {type(value).__name__} was sent as text")
            return str(value)
        return self._text(value)

    def _text(self, value: Any) -> dict[str, Any]:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        try:
            text = repr(value)
        except Exception as exc:  # a broken __repr__ must not break the call
            text = f"<{kind}: repr failed: {type(exc).__name__}>"
        self.notes.append(f"{kind} has no safe format; it was sent as its repr text")
        return {MARK: "text", "type": kind, "value": text[:TEXT_LIMIT]}

    def _numpy(self, value: Any, depth: int) -> Any:
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            return self._text(value)
        if value.shape == () and hasattr(value, "item") and type(value).__name__ != "ndarray":
            return self._walk(value.item(), depth + 1)  # numpy scalar
        if "npy" in self.accept and not value.dtype.hasobject:
            import numpy

            buf = io.BytesIO()
            numpy.save(buf, value, allow_pickle=False)
            return self._blob("ndarray", buf.getvalue())
        self.notes.append("an ndarray was sent as nested lists")
        return self._walk(value.tolist(), depth + 1)

    def _frame(self, frame: Any, kind: str) -> dict[str, Any]:
        if "parquet" in self.accept:
            try:
                buf = io.BytesIO()
                frame.to_parquet(buf)
                return self._blob(kind, buf.getvalue(), format="parquet")
            except Exception as exc:  # e.g. non-str column names, object columns
                self.notes.append(f"Parquet failed ({type(exc).__name__}: {exc}); sent as JSON")
        split = json.loads(frame.to_json(orient="split", date_format="iso"))
        if "pandas" in self.accept:
            return {MARK: kind, "format": "split", "value": split}
        self.notes.append(f"a {kind} was sent as a dict (pandas is missing on the receiver)")
        as_dict: dict[str, Any] = self._walk(split, 0)
        return as_dict


def _json_exact(value: Any) -> bool:
    # json.dumps turns tuples into lists and int keys into str, and writes NaN;
    # only containers of exact JSON types may skip the walk.
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > 10_000:
            return False  # big values are walked; the walk is exact anyway
        kind = type(item)
        if kind is dict:
            if MARK in item or not all(type(k) is str for k in item):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind not in (str, int, bool, type(None)):
            return False
    return True


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _to_png(value: Any) -> "bytes | None":
    module = type(value).__module__
    try:
        if module.startswith("matplotlib") and hasattr(value, "savefig"):
            buf = io.BytesIO()
            value.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()
        if module.startswith("PIL") and hasattr(value, "save"):
            buf = io.BytesIO()
            value.save(buf, format="PNG")
            return buf.getvalue()
        repr_png = getattr(value, "_repr_png_", None)
        if callable(repr_png) and not isinstance(value, type):
            data = repr_png()
            if isinstance(data, str):
                data = base64.b64decode(data)
            if isinstance(data, bytes) and data.startswith(PNG_SIGNATURE):
                return data
    except Exception:  # drawing failed: fall back to the repr text
        return None
    return None


class Decoder:
    """Rebuilds values from (object, blobs). Blobs are untrusted bytes.

    With ``max_bytes``, the decoded size of every Parquet and .npy blob is read from
    its own metadata before anything is decoded, and the value is refused (ValueError
    naming ``limit_name``) once their total would pass it.
    """

    def __init__(
        self, blobs: "list[bytes]", max_bytes: "int | None" = None, limit_name: str = "",
    ) -> None:
        self.blobs = blobs
        self.notes: list[str] = []
        self.max_bytes = max_bytes
        self.limit_name = limit_name
        self.decoded = 0

    def _charge(self, size: int, what: str) -> None:
        self.decoded += size
        if self.max_bytes is not None and self.decoded > self.max_bytes:
            raise ValueError(
                f"the {what} decodes to {size:,} bytes, over the host's limit of "
                f"{self.max_bytes:,} bytes for one value ({self.limit_name or 'max_bytes'}); "
                "return a smaller value, or a summary of it"
            )

    def decode(self, obj: Any) -> Any:
        if isinstance(obj, list):
            return [self.decode(v) for v in obj]
        if not isinstance(obj, dict):
            return obj
        if MARK not in obj:
            return {k: self.decode(v) for k, v in obj.items()}
        kind = obj[MARK]
        if kind == "dict":
            return {str(k): self.decode(v) for k, v in obj["items"]}
        if kind == "float":
            text = obj.get("value")
            return float(text) if text in ("nan", "inf", "-inf") else math.nan
        if kind == "text":
            return str(obj.get("value", ""))
        if kind in ("dataframe", "series"):
            return self._frame(obj, kind)
        if kind == "ndarray":
            import numpy

            data = self._bytes(obj)
            if self.max_bytes is not None:
                self._charge(npy_decoded_size(data), "array")
            return numpy.load(io.BytesIO(data), allow_pickle=False)
        if kind == "png":
            data = self._bytes(obj)
            if not data.startswith(PNG_SIGNATURE):
                raise ValueError("a png blob does not start with the PNG signature")
            return data
        if kind == "bytes":
            return self._bytes(obj)
        raise ValueError(f"unknown encoded kind {kind!r}")

    def _bytes(self, obj: "dict[str, Any]") -> bytes:
        index = obj.get("blob")
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise ValueError(f"bad blob reference {index!r}")
        return self.blobs[index]

    def _frame(self, obj: "dict[str, Any]", kind: str) -> Any:
        if obj.get("format") == "parquet":
            # pyarrow >= 14.0.1 never unpickles extension types (CVE-2023-47248);
            # reading through read_table keeps pandas' own metadata only.
            import pyarrow.parquet

            data = self._bytes(obj)
            if self.max_bytes is not None:
                self._charge(parquet_decoded_size(data, self.max_bytes - self.decoded),
                             f"{kind} (Parquet)")
            frame = pyarrow.parquet.read_table(io.BytesIO(data)).to_pandas()
        elif obj.get("format") == "split":
            import pandas

            split = obj.get("value")
            if not isinstance(split, dict):
                raise ValueError("a split frame needs a dict value")
            frame = pandas.DataFrame(
                split.get("data", []), columns=split.get("columns"), index=split.get("index")
            )
        else:
            raise ValueError(f"unknown {kind} format {obj.get('format')!r}")
        if kind == "series":
            series = frame.iloc[:, 0]
            series.name = self.decode(obj.get("name"))
            return series
        return frame


# Bytes one value of a Parquet physical type takes once decoded.
PARQUET_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}
POINTER = 8  # per value of a variable-width column, once in pandas


def npy_decoded_size(data: bytes) -> int:
    """Bytes the .npy ``data`` decodes to, from its header; ValueError if the data
    does not match it."""
    import numpy.lib.format as npy

    stream = io.BytesIO(data)
    version = npy.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    count = math.prod(shape)
    size = count * dtype.itemsize
    if len(data) - stream.tell() != size:
        raise ValueError(f"the .npy data is {len(data) - stream.tell()} bytes; its header "
                         f"says {size}")
    return int(max(size, count))  # zero-width items still cost a slot each


def parquet_decoded_size(data: bytes, room: int) -> int:
    """Bytes the Parquet ``data`` decodes to, from its footer: fixed-width columns by
    count x width, plain strings by their page sizes. Dictionary-encoded strings are
    read as dictionaries (bounded by the file's own pages) and measured exactly, but
    only when the footer's estimate is already within ``room``."""
    import pyarrow
    import pyarrow.parquet

    meta = pyarrow.parquet.ParquetFile(pyarrow.BufferReader(data)).metadata
    estimate, dictionary_paths = 0, set()
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            kind = column.physical_type
            if kind in PARQUET_WIDTHS:
                estimate += column.num_values * PARQUET_WIDTHS[kind]
            elif kind == "FIXED_LEN_BYTE_ARRAY":
                estimate += column.num_values * max(1, meta.schema.column(index).length)
            elif "DELTA_BYTE_ARRAY" in column.encodings:
                # Each value is a suffix of the one before: the decoded size of the
                # column is in no metadata, and the host's own encoder never writes it.
                raise ValueError("a Parquet column uses DELTA_BYTE_ARRAY, whose decoded size "
                                 "cannot be read before decoding; it is not accepted")
            else:
                estimate += column.total_uncompressed_size + column.num_values * POINTER
                if any("DICTIONARY" in e for e in column.encodings):
                    dictionary_paths.add(column.path_in_schema)
    if estimate > room or not dictionary_paths:
        return estimate
    table = pyarrow.parquet.read_table(pyarrow.BufferReader(data),
                                       read_dictionary=sorted(dictionary_paths))
    return estimate + sum(_expanded(column.chunks) for column in table.columns)


def _expanded(arrays: "list[Any]") -> int:
    """Extra bytes dictionary arrays (at any depth) take once their values are expanded."""
    import pyarrow
    import pyarrow.compute

    extra = 0
    for array in arrays:
        kind = array.type
        if pyarrow.types.is_dictionary(kind):
            lengths = pyarrow.compute.binary_length(array.dictionary)
            total = pyarrow.compute.sum(pyarrow.compute.take(lengths, array.indices)).as_py()
            extra += int(total or 0)
        elif pyarrow.types.is_list(kind) or pyarrow.types.is_large_list(kind):
            extra += _expanded([array.flatten()])
        elif pyarrow.types.is_struct(kind):
            extra += _expanded([array.field(i) for i in range(kind.num_fields)])
    return extra


def kind_of(obj: Any) -> str:
    """The kind of a top-level encoded object: json, dataframe, ndarray, png, text..."""
    if isinstance(obj, dict) and obj.get(MARK) not in (None, "dict", "float"):
        return str(obj[MARK])
    return "json"
