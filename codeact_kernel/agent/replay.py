"""Re-running a trace notebook in a fresh sandboxed kernel and comparing outputs: the
agent's steps without the model, in a kernel set up as the agent sets up its own.

Hermetic by default: tool calls are served from the results recorded in the
trace (its setup cell), so replay calls no tool, no API and no model; this
module never imports litellm. ``live_tools`` calls the real host tools instead.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from traitlets import Bool, Float, Instance, TraitError, default, validate
from traitlets.config import Configurable

from ..kernels.session import KernelSession
from ..tools.bootstrap import kernel_bootstrap_code
from ..tools.paging import follow_as_recorded
from ..tools.server import ToolServer
from ..tools.tool import Tool
from ..trace.actions import INVALID_CALL_TAG
from ..trace.caps import cap_outputs
from ..trace.notebook import BLOCKED_TAG, SETUP_TAG, load_trace
from ..trace.validate import TraceLimits
from .observation import observed_text
from .workspace import keep_full_output

# Each pattern is linear: a fixed prefix, then classes that cannot overlap what follows
# them. Trailing blanks and session paths, whose natural regexes backtrack quadratically
# (64 KB of spaces took 7 s), are handled by hand below.
_NORMALIZERS = [
    (re.compile(r"0x[0-9a-fA-F]{4,}"), "0x<addr>"),
    (re.compile(r"\b\d+(?:\.\d+)?(?:e-?\d+)?\s?(?:ns|µs|us|ms|s|sec|secs|seconds)\b"), "<time>"),
    (re.compile(r"\b(?:id|pid)=\d+"), "id=<n>"),
    (re.compile(r"(?:Cell )?In ?\[\d*\]"), "In[<n>]"),
]
# A maximal run of path characters; the session folder is looked for inside each run.
_PATH_RUN = re.compile(r"[\w./-]+")
_SESSION_TAIL = re.compile(r"codeact-sessions-\d+/s\d+-\w+")
_SESSION_MARK = "codeact-sessions-"
# Diffs show 40 lines; difflib is quadratic in the worst case, so it sees a bounded part.
MAX_DIFF_LINES = 2000
IMAGE_PREFIX = "image/"


def normalize(text: str) -> str:
    """Remove what legitimately varies between runs: addresses, timings, ids, paths."""
    for pattern, replacement in _NORMALIZERS:
        text = pattern.sub(replacement, text)
    if _SESSION_MARK in text:
        text = _PATH_RUN.sub(_session_path, text)
    return "\n".join(line.rstrip(" \t") for line in text.split("\n"))


def _session_path(run: re.Match[str]) -> str:
    """In one run of path characters, the span from its first '/' to the end of the last
    session folder after it becomes <session> (what ``/[\\w./-]*codeact-sessions-...``
    matched, without its backtracking)."""
    path = run.group(0)
    slash = path.find("/")
    if slash < 0 or _SESSION_MARK not in path[slash:]:
        return path
    last = None
    for match in _SESSION_TAIL.finditer(path, slash + 1):
        last = match
    if last is None:
        return path
    return path[:slash] + "<session>" + path[last.end():]


def render_outputs(outputs: list[Any]) -> list[str]:
    """A comparable text form of outputs; images compare by kind, not by bytes."""
    lines: list[str] = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            lines.append(f"[{output.get('name')}]")
            lines.extend(normalize(_text(output.get("text", ""))).splitlines())
        elif kind == "error":
            lines.append(f"[error] {output.get('ename')}: {normalize(output.get('evalue', ''))}")
        else:
            data = output.get("data", {})
            for mime in sorted(data):
                if mime.startswith(IMAGE_PREFIX):
                    lines.append(f"[{kind} {mime}]")
                elif mime in ("text/plain", "text/html", "text/markdown", "application/json"):
                    lines.append(f"[{kind} {mime}]")
                    value = data[mime]
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    lines.extend(normalize(_text(text)).splitlines())
    return _merge_streams(lines)


def _cap(value: Any) -> int | None:
    """A size cap recorded in the trace's metadata, if it is a usable one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _merge_streams(lines: list[str]) -> list[str]:
    # Stream chunking varies between runs; only the text per stream matters.
    merged: list[str] = []
    for line in lines:
        if line.startswith("[std") and merged and merged[-1] == line:
            continue
        merged.append(line)
    return merged


@dataclass
class CellVerdict:
    cell: int
    step: int | None
    verdict: str  # same | differs | error-reproduced | blocked | invalid-call
    diff: str = ""


@dataclass
class ReplayReport:
    trace: str
    cells: list[CellVerdict] = field(default_factory=list)

    @property
    def all_same(self) -> bool:
        return all(c.verdict != "differs" for c in self.cells)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for cell in self.cells:
            out[cell.verdict] = out.get(cell.verdict, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"trace": self.trace, "all_same": self.all_same, "counts": self.counts(),
                "cells": [asdict(c) for c in self.cells]}


class Replayer(Configurable):
    """Re-executes a trace's code cells, in order, in a fresh sandboxed kernel."""

    timeout = Float(
        0.0, help="Seconds each cell may run; 0 means the step timeout recorded in the trace."
    ).tag(config=True)

    @validate("timeout")
    def _finite_timeout(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not math.isfinite(value) or value < 0:
            raise TraitError(f"Replayer.timeout must be a finite number of seconds >= 0, "
                             f"not {proposal['value']!r}")
        return value

    live_tools = Bool(
        False, help="Call the real host tools instead of serving the recorded results."
    ).tag(config=True)
    session = Instance(KernelSession, help="The sandboxed kernel session to replay in.")

    @default("session")
    def _default_session(self) -> KernelSession:
        return KernelSession(parent=self)

    async def areplay(self, path: str | Path, tools: list[Tool] | None = None) -> ReplayReport:
        nb = load_trace(path, TraceLimits(parent=self))
        report = ReplayReport(str(path))
        timeout = self.timeout or float(nb.metadata["codeact"].get("agent", {}).get(
            "step_timeout", 60))
        server: ToolServer | None = None
        async with self.session as session:
            if self.live_tools:
                server = self._live_tools(session, tools or [], nb)
            try:
                await self._run_setup(session, nb)
                for index, cell in enumerate(nb.cells):
                    verdict = await self._replay_cell(session, index, cell, timeout,
                                                      nb.metadata["codeact"].get("agent", {}))
                    if verdict is not None:
                        report.cells.append(verdict)
            finally:
                if server is not None:
                    server.stop()
        return report

    replay = run_sync(areplay)

    def _live_tools(self, session: KernelSession, tools: list[Tool],
                    nb: NotebookNode) -> ToolServer:
        recorded = {t["name"] for t in nb.metadata["codeact"].get("tools", [])}
        missing = sorted(recorded - {t.name for t in tools})
        if missing:
            from ..errors import ToolError

            raise ToolError(
                f"--live-tools needs every tool the trace used; missing: {', '.join(missing)}. "
                "Pass them with --tools pkg.module:name"
            )
        assert session.session_dir is not None
        tools = follow_as_recorded(tools, nb.metadata["codeact"].get("agent"))
        server = ToolServer(tools, session.session_dir / "tools.sock",
                            token=secrets.token_hex(16)).start()
        session.startup_code = [kernel_bootstrap_code(tools, server.socket_path,
                                                      token=server.token)]
        return server

    async def _run_setup(self, session: KernelSession, nb: NotebookNode) -> None:
        if self.live_tools:
            await session.async_run_startup_code()
            return
        setup = next((c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])), None)
        if setup is not None:
            result = await session.async_execute(setup.source, silent=True,
                                                 store_history=False, timeout=60)
            if not result.ok:
                from ..errors import TraceError

                raise TraceError(f"the trace's replay setup cell failed: {result.reason}")

    async def _replay_cell(self, session: KernelSession, index: int, cell: NotebookNode,
                           timeout: float, caps: dict[str, Any]) -> CellVerdict | None:
        meta = cell.metadata.get("codeact", {})
        tags = cell.metadata.get("tags", [])
        step = meta.get("step")
        if cell.cell_type == "raw" and BLOCKED_TAG in tags:
            return CellVerdict(index, step, "blocked")
        if cell.cell_type == "raw" and INVALID_CALL_TAG in tags:
            return CellVerdict(index, step, "invalid-call")  # a function call never made
        if cell.cell_type != "code" or SETUP_TAG in tags:
            return None
        result = await session.async_execute(cell.source, timeout=timeout)
        if isinstance(meta.get("outputs_key"), int):
            # As in the run: later cells may page through this one's whole output.
            text = observed_text(result, limit=_cap(caps.get("max_kept_output_chars")))
            await keep_full_output(session, meta["outputs_key"], text, timeout)
        outputs = result.outputs
        limit = _cap(caps.get("max_trace_output_bytes"))
        if limit is not None:  # compared as the run kept them: cut alike iff the same
            outputs, _ = cap_outputs(outputs, limit)
        recorded, fresh = render_outputs(cell.outputs), render_outputs(outputs)
        if recorded != fresh:
            diff = "\n".join(list(difflib.unified_diff(
                recorded[:MAX_DIFF_LINES], fresh[:MAX_DIFF_LINES], "recorded", "replayed",
                lineterm="", n=1))[:40])
            return CellVerdict(index, step, "differs", diff)
        had_error = any(o.get("output_type") == "error" for o in cell.outputs)
        return CellVerdict(index, step, "error-reproduced" if had_error else "same")
