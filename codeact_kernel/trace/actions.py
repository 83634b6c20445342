"""A step's JSON function calls as trace cells of their own kind.

The step's record sits on the model's Markdown cell (as for a reply without code); each
call follows as one cell with ``metadata.codeact.role == "tool_call"``:

* a valid call is a code cell holding the Python call it amounts to
  (``get_population(city='Paris');``, the semicolon keeps replay from displaying the
  value), so ``codeact replay`` and Run All re-run it against the recorded results: the
  arguments must match the record, and a call that raised must raise the same again
  (its recorded error output says how, as the replay setup's stub raises it);
* an invalid call (an unknown function, arguments that are not a JSON object) is a raw
  cell with the tag ``invalid-call`` holding what the model sent: nothing to run.
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output, new_raw_cell

INVALID_CALL_TAG = "invalid-call"
TOOL_CALL_ROLE = "tool_call"


def action_cells(step: int, actions: list[dict[str, Any]],
                 tool_calls: list[dict[str, Any]]) -> list[NotebookNode]:
    """One cell per call of ``actions``; ``tool_calls`` (the server's records, in the
    calls' order) give the errors replay raises again."""
    recorded: dict[str, list[dict[str, Any]]] = {}
    for call in tool_calls:
        recorded.setdefault(str(call.get("name")), []).append(call)
    cells: list[NotebookNode] = []
    for index, action in enumerate(actions):
        meta = {"codeact": {"role": TOOL_CALL_ROLE, "step": step, "call": index,
                            "id": action.get("id")}}
        source = action.get("source")
        if source is None:
            raw = json.dumps({"name": action.get("name"), "arguments": action.get("arguments")},
                             ensure_ascii=False)
            cell = new_raw_cell(raw, metadata=meta)
            cell.metadata["tags"] = [INVALID_CALL_TAG]
            cell.metadata["raw_mimetype"] = "application/json"
            cells.append(cell)
            continue
        cell = new_code_cell(f"{source};", metadata=meta)
        queue = recorded.get(str(action.get("name")), [])
        made = queue.pop(0) if queue else None
        if made is not None and made.get("error"):
            ename, evalue = replayed_error(str(action.get("name")), str(made["error"]))
            cell.outputs = [new_output("error", ename=ename, evalue=evalue,
                                       traceback=[f"{ename}: {evalue}"])]
        cells.append(cell)
    return cells


def replayed_error(name: str, error: str) -> tuple[str, str]:
    """The exception the replay setup's stub raises for a recorded ``error`` (as
    kernel_side/replay_setup.py's ``_codeact_error`` builds it): its name and message."""
    type_name, _, message = error.partition(": ")
    if type_name == "ToolDenied":
        return "ToolDenied", message
    base = getattr(builtins, type_name, None)
    if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
        try:  # str() as the kernel shows it: a KeyError quotes its message
            return type_name, str(base(f"{message} (raised by host tool {name})"))
        except Exception:
            pass
    return "ToolCallError", f"{error} (raised by host tool {name})"


def is_call_cell(cell: NotebookNode) -> bool:
    meta = cell.metadata.get("codeact", {})
    return isinstance(meta, dict) and meta.get("role") == TOOL_CALL_ROLE
