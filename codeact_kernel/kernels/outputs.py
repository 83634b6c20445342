"""Turning one execution's iopub messages into nbformat outputs, as Jupyter saves them."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from nbformat import NotebookNode, from_dict
from nbformat.v4 import new_output, output_from_msg

from .budget import OutputBudget, content_size
from .execution import ErrorInfo, ExecutionResult, strip_ansi
from .messages import (
    MAX_REASONS,
    Malformed,
    check_iopub,
    clean_reply,
    invalid_output,
    parent_id,
)

OUTPUT_TYPES = {"stream", "display_data", "execute_result", "error"}
# Messages that add to or change the outputs: what the budget counts.
BUDGETED = OUTPUT_TYPES | {"update_display_data", "clear_output"}
UNLIMITED = 2**62


class OutputCollector:
    """Collects the outputs of the execution whose request id is ``msg_id``.

    Follows nbclient's rules: consecutive stream outputs of one name are merged,
    ``clear_output(wait=True)`` clears at the next output, and
    ``update_display_data`` rewrites every output carrying that display id. What a clear
    removes was already shown live, so the first ``max_cleared`` of those outputs are kept
    aside in ``cleared`` (the rest counted in ``cleared_dropped``): the trace is the
    record of what the operator saw, and code must not be able to erase it.
    Within ``budget``: past its caps the rest of the output is dropped and counted (a
    stream that straddles the cap keeps its head).
    """

    def __init__(self, msg_id: str, on_output: Callable[[NotebookNode], Any] | None,
                 max_cleared: int = 200, budget: OutputBudget | None = None) -> None:
        self.msg_id = msg_id
        self.on_output = on_output
        self.budget = budget or OutputBudget(UNLIMITED, UNLIMITED)
        self.started = time.monotonic()
        self.outputs: list[NotebookNode] = []
        # Stream chunks by output index, joined once at the end: appending to one
        # growing str per chunk is quadratic under a flood of small prints.
        self.chunks: dict[int, list[str]] = {}
        self.display_ids: dict[str, list[int]] = {}
        self.clear_pending = False
        self.max_cleared = max_cleared
        self.cleared: list[NotebookNode] = []
        self.cleared_dropped = 0
        self.idle = False
        self.execution_count: int | None = None
        self.reply: dict[str, Any] | None = None
        self.rejected: list[str] = []
        self.rejected_count = 0
        self.foreign: dict[str, int] = {}

    def wants(self, msg_type: str, parent: str | None, size: int) -> bool:
        """Whether a message is worth parsing, from its header frames alone; a refused
        output of this execution is counted as dropped."""
        if parent != self.msg_id:
            self.note_foreign(parent)
            return False
        if msg_type not in BUDGETED:
            return True
        room = self.budget.room()
        # A stream that straddles the cap is parsed for its head; anything else whole.
        if room == 0 or (size > room and msg_type != "stream"):
            self.budget.drop(size)
            return False
        return True

    def handle(self, msg: dict[str, Any]) -> None:
        if not isinstance(msg.get("parent_header"), dict):
            self.reject(f"{str(msg.get('msg_type'))[:40]}: the parent header is not an object")
            return
        parent = parent_id(msg)
        if parent != self.msg_id:
            self.note_foreign(parent)
            return
        try:
            check_iopub(msg)
            self._handle(msg)
        except Exception as exc:  # whatever the kernel sent, the host carries on
            self.reject(f"{str(msg.get('msg_type'))[:40]}: {type(exc).__name__}: {exc}")

    def take_reply(self, msg: dict[str, Any]) -> bool:
        """Keep ``msg`` as this execution's reply if it is one the host can use."""
        parent = parent_id(msg)
        if parent != self.msg_id:
            self.note_foreign(parent)
            return False
        try:
            self.reply = clean_reply(msg.get("content"))
        except Malformed as exc:
            self.reject(str(exc))
            return False
        return True

    def reject(self, reason: str) -> None:
        """Count a message that was malformed, keeping the first reasons."""
        self.rejected_count += 1
        if len(self.rejected) < MAX_REASONS:
            self.rejected.append(reason[:300])

    def note_foreign(self, parent: str | None) -> None:
        """Count a message answering another request (say, a step that should be over)."""
        if parent is not None and (parent in self.foreign or len(self.foreign) < 64):
            self.foreign[parent] = self.foreign.get(parent, 0) + 1

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "status":
            self.idle = content.get("execution_state") == "idle"
        elif kind == "execute_input":
            self.execution_count = content.get("execution_count")
        elif kind in BUDGETED and self._admit(kind, content):
            self._apply(kind, msg)

    def _apply(self, kind: str, msg: dict[str, Any]) -> None:
        content = msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self._clear()
        elif kind == "update_display_data":
            self._update_display(content)
        else:
            self._add(msg)

    def _admit(self, kind: str, content: dict[str, Any]) -> bool:
        size = content_size(content)
        room = self.budget.room()
        if size <= room:
            self.budget.keep(size)
            return True
        if kind == "stream" and room > 0 and isinstance(content.get("text"), str):
            # Keep the head that fits; the rest of this chunk, and all that follows, go.
            content["text"] = content["text"][:room]
            self.budget.keep(room)
            self.budget.drop(size - room)
            return True
        self.budget.drop(size)
        return False

    def _clear(self) -> None:
        self._join_streams()
        room = max(0, self.max_cleared - len(self.cleared))
        self.cleared.extend(self.outputs[:room])
        self.cleared_dropped += len(self.outputs[room:])
        self.outputs.clear()
        self.display_ids.clear()
        self.clear_pending = False

    def _add(self, msg: dict[str, Any]) -> None:
        if self.clear_pending:
            self._clear()
        output = output_from_msg(msg)
        if output.output_type != "stream":  # streams: check_iopub has checked both fields
            problem = invalid_output(output)
            if problem is not None:
                raise Malformed(f"not a valid nbformat output: {problem}")
        if output.output_type == "stream" and self.outputs:
            last = self.outputs[-1]
            if last.output_type == "stream" and last.name == output.name:
                self.chunks.setdefault(len(self.outputs) - 1, [last.text]).append(output.text)
                self._notify(output)
                return
        display_id = msg["content"].get("transient", {}).get("display_id")
        if display_id:
            self.display_ids.setdefault(display_id, []).append(len(self.outputs))
        self.outputs.append(output)
        self._notify(output)

    def _update_display(self, content: dict[str, Any]) -> None:
        display_id = content.get("transient", {}).get("display_id")
        targets = self.display_ids.get(display_id, []) if isinstance(display_id, str) else []
        if targets:
            problem = invalid_output(new_output("display_data", data=content.get("data", {}),
                                                metadata=content.get("metadata", {})))
            if problem is not None:
                raise Malformed(f"not a valid nbformat output: {problem}")
        for index in targets:
            self.outputs[index].data = from_dict(content.get("data", {}))
            self.outputs[index].metadata = from_dict(content.get("metadata", {}))

    def _notify(self, output: NotebookNode) -> None:
        # A copy: the callback may keep or change it, and must see each chunk exactly once.
        if self.on_output is not None:
            self.on_output(copy.deepcopy(output))

    def _join_streams(self) -> None:
        for index, parts in self.chunks.items():
            self.outputs[index].text = "".join(parts)
        self.chunks.clear()

    def result(self, status: str | None = None) -> ExecutionResult:
        self._join_streams()
        reply = self.reply or {}
        result = ExecutionResult(
            status=status or reply.get("status", "ok"),
            execution_count=reply.get("execution_count", self.execution_count),
            outputs=self.outputs,
            user_expressions=reply.get("user_expressions", {}),
            cleared_outputs=self.cleared,
            cleared_dropped=self.cleared_dropped,
            msg_id=self.msg_id,
            rejected=self.rejected,
            rejected_count=self.rejected_count,
            foreign=self.foreign,
            output_dropped=self.budget.as_dict() if self.budget.exhausted else None,
        )
        stdout: list[str] = []
        stderr: list[str] = []
        for output in self.outputs:
            if output.output_type == "stream":
                (stdout if output.name == "stdout" else stderr).append(output.text)
            elif output.output_type == "error":
                result.error = ErrorInfo(
                    output.ename, output.evalue, [strip_ansi(t) for t in output.traceback]
                )
        result.stdout, result.stderr = "".join(stdout), "".join(stderr)
        if result.error is None and reply.get("status") == "error":
            result.error = ErrorInfo(
                reply.get("ename", ""),
                reply.get("evalue", ""),
                [strip_ansi(t) for t in reply.get("traceback", [])],
            )
        if result.error is not None:
            result.reason = f"{result.error.ename}: {result.error.evalue}"
        result.add_note(self.budget.note())
        return result
