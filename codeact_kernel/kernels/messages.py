"""Checking what the kernel sends before the host acts on it.

The kernel holds its own HMAC key, so a correctly signed message proves nothing: model
code can send any message, with any fields of any type. Before the output collector
reads a message, the fields it reads are checked here; a message that fails is rejected
(counted, with its reason, and kept out of the outputs), never raised into the host.
Outputs are checked once more against nbformat's own schema when the execution's result
is built, so the trace always validates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from nbformat import NotebookNode

# The reasons kept per execution; past this only the count grows.
MAX_REASONS = 20
REPLY_STATUSES = ("ok", "error", "aborted")


class Malformed(ValueError):
    """A message from the kernel that the host cannot use as it stands."""


def parent_id(msg: Any) -> str | None:
    """The request id a message answers, or None when it has none that reads."""
    parent = msg.get("parent_header") if isinstance(msg, dict) else None
    value = parent.get("msg_id") if isinstance(parent, dict) else None
    return value if isinstance(value, str) else None


def check_iopub(msg: dict[str, Any]) -> None:
    """Raise Malformed unless the fields the collector reads have their protocol types."""
    kind, content = msg.get("msg_type"), msg.get("content")
    if not isinstance(kind, str):
        raise Malformed("no msg_type")
    if not isinstance(content, dict):
        raise Malformed(f"{kind}: content is {type(content).__name__}, not an object")
    for key, types in _FIELDS.get(kind, ()):
        if key in content and not isinstance(content[key], types):
            raise Malformed(f"{kind}: {key} is {type(content[key]).__name__}")
    for key in _REQUIRED.get(kind, ()):
        if key not in content:
            raise Malformed(f"{kind}: no {key}")
    if kind == "error" and not all(isinstance(line, str) for line in content["traceback"]):
        raise Malformed("error: the traceback is not a list of strings")


def clean_reply(content: Any) -> dict[str, Any]:
    """An execute_reply's content with the fields the host reads coerced to their types."""
    if not isinstance(content, dict):
        raise Malformed(f"execute_reply: content is {type(content).__name__}")
    reply = dict(content)
    if reply.get("status") not in REPLY_STATUSES:
        reply["status"] = "error"
    if not isinstance(reply.get("execution_count"), (int, type(None))) or isinstance(
            reply.get("execution_count"), bool):
        reply["execution_count"] = None
    if not isinstance(reply.get("user_expressions"), dict):
        reply["user_expressions"] = {}
    for key in ("ename", "evalue"):
        if key in reply and not isinstance(reply[key], str):
            reply[key] = str(reply[key])[:1000]
    traceback = reply.get("traceback", [])
    if not (isinstance(traceback, list) and all(isinstance(t, str) for t in traceback)):
        reply["traceback"] = []
    return reply


def invalid_output(output: NotebookNode) -> str | None:
    """Why ``output`` would not validate in a notebook (nbformat's schema), or None."""
    check = _validators().get(str(output.get("output_type")))
    if check is None:
        return f"unknown output type {output.get('output_type')!r}"
    try:
        check(output)
    except Exception as exc:  # fastjsonschema's JsonSchemaException, or a type error
        return str(getattr(exc, "message", exc))[:200]
    return None


_STR, _DICT = (str,), (dict,)
_FIELDS: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "stream": (("name", _STR), ("text", _STR)),
    "display_data": (("data", _DICT), ("metadata", _DICT), ("transient", _DICT)),
    "update_display_data": (("data", _DICT), ("metadata", _DICT), ("transient", _DICT)),
    "execute_result": (("data", _DICT), ("metadata", _DICT), ("transient", _DICT)),
    "error": (("ename", _STR), ("evalue", _STR), ("traceback", (list,))),
    "status": (("execution_state", _STR),),
    "clear_output": (("wait", (bool,)),),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "stream": ("name", "text"),
    "display_data": ("data",),
    "execute_result": ("data",),
    "error": ("ename", "evalue", "traceback"),
}


@functools.lru_cache(maxsize=1)
def _validators() -> dict[str, Callable[[Any], Any]]:
    """One compiled schema per output type: checking against the union of the four costs
    three times as much (about 40 us a display_data here, against 130 us)."""
    names = ("stream", "display_data", "execute_result", "error")
    try:
        import fastjsonschema
        import nbformat.v4
        from nbformat.validator import _get_schema_json

        definitions = _get_schema_json(nbformat.v4, version=4, version_minor=5)["definitions"]
        return {name: fastjsonschema.compile({"definitions": definitions,
                                              "$ref": f"#/definitions/{name}"})
                for name in names}
    except Exception:  # nbformat moved its schema loader: its public, slower check
        return {name: _whole_notebook_check for name in names}


def _whole_notebook_check(output: Any) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = new_code_cell()
    cell.outputs = [output]
    nbformat.validate(new_notebook(cells=[cell]))
