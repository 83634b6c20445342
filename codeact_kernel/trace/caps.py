"""A capped size per output kept in the trace: head, tail, original size and sha256.

The kernel decides how large its outputs are, and the trace is rewritten after every
step, so an output larger than the cap is kept as its head and tail around a marker
that gives its original size and sha256. The marker repeats in a note: the output's
own metadata where nbformat allows one (displays and results), and always the cell's
``codeact.outputs_cut`` list (streams and errors have no metadata field).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nbformat import NotebookNode, from_dict

HEAD_SHARE = 2 / 3  # of the kept bytes; the rest is the tail
TEXT_MIMES = ("text/plain",)


def cap_outputs(
    outputs: list[NotebookNode], limit: int
) -> tuple[list[NotebookNode], list[dict[str, Any]]]:
    """The outputs as the trace keeps them, and a note per output that was cut."""
    kept: list[NotebookNode] = []
    notes: list[dict[str, Any]] = []
    for index, output in enumerate(outputs):
        capped, note = cap_output(output, limit)
        kept.append(capped)
        if note is not None:
            notes.append({"index": index, **note})
    return kept, notes


def cap_output(output: NotebookNode, limit: int) -> tuple[NotebookNode, dict[str, Any] | None]:
    """``output`` itself when it fits in ``limit`` bytes; else a cut copy and its note."""
    kind = output.get("output_type")
    if kind == "stream":
        data = str(output.get("text", "")).encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return output, None
        text, note = _cut(data, limit)
        return from_dict({**output, "text": text}), note
    if kind == "error":
        return _cap_error(output, limit)
    if kind in ("display_data", "execute_result"):
        return _cap_display(output, limit)
    return output, None


def _cap_error(output: NotebookNode, limit: int) -> tuple[NotebookNode, dict[str, Any] | None]:
    data = "\n".join(str(line) for line in output.get("traceback", [])).encode(
        "utf-8", "surrogatepass")
    evalue = str(output.get("evalue", ""))
    if len(data) + len(evalue) <= limit:
        return output, None
    text, note = _cut(data, limit)
    short_evalue = evalue if len(evalue) <= limit // 8 else evalue[: limit // 8] + " [...]"
    return from_dict({**output, "evalue": short_evalue, "traceback": [text]}), note


def _cap_display(output: NotebookNode, limit: int) -> tuple[NotebookNode, dict[str, Any] | None]:
    bundle = output.get("data", {})
    canonical = json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()
    if len(canonical) <= limit:
        return output, None
    plain = bundle.get("text/plain", "")
    plain = plain if isinstance(plain, str) else "".join(plain)
    text, note = _cut(plain.encode("utf-8", "surrogatepass"), limit, whole=canonical)
    note["dropped_mimes"] = sorted(m for m in bundle if m not in TEXT_MIMES)
    metadata = dict(output.get("metadata", {}))
    metadata["codeact"] = {**metadata.get("codeact", {}), "truncated": note}
    return from_dict({**output, "data": {"text/plain": text}, "metadata": metadata}), note


def _cut(data: bytes, limit: int, whole: bytes | None = None) -> tuple[str, dict[str, Any]]:
    """Head and tail of ``data`` around a marker naming what ``whole`` (default: ``data``)
    was: its size and sha256."""
    whole = data if whole is None else whole
    digest = hashlib.sha256(whole).hexdigest()
    head_bytes = int(limit * HEAD_SHARE)
    tail_bytes = max(0, limit - head_bytes)
    if len(data) <= limit:
        head, tail = data.decode("utf-8", "replace"), ""
    else:
        head = data[:head_bytes].decode("utf-8", "ignore")
        tail = data[len(data) - tail_bytes:].decode("utf-8", "ignore") if tail_bytes else ""
    marker = (f"\n[... output cut in the trace: {len(whole):,} bytes, sha256 {digest}; "
              f"the head and tail are kept (Agent.max_trace_output_bytes) ...]\n")
    note = {"original_bytes": len(whole), "sha256": digest, "kept_bytes": limit,
            "marker": marker}
    return head + marker + tail, note
