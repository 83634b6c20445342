"""Running a task file in each action format, and what the run measures.

One model endpoint serves the whole run (the embedded model's server starts once); each
task gets a fresh agent, so a fresh sandboxed kernel and a fresh conversation. Runs go
round by round, and in each round task by task through every format, so that a machine
whose load changes during the run weighs on every format alike.

Each run ends as one of: ``pass`` (answered, the checker says right, and every required
tool was called without error); ``wrong answer`` (answered otherwise, or an empty
answer); ``budget exhausted`` (the step or time budget ran out while the model acted);
``no answer`` (the budget ran out and the model never made a tool call or ran code);
``error`` (the run failed: the model's endpoint, the kernel, the harness).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_core.utils import run_sync
from traitlets import Enum, Instance, Int, List, Unicode, default
from traitlets.config import Configurable

from ..agent.loop import Agent
from ..agent.results import RunResult
from ..errors import BenchError, CodeActError
from ..models.llm import LLM
from .tasks import BenchTask

FORMATS = ("code", "json", "auto")
CATEGORIES = ("pass", "wrong answer", "budget exhausted", "no answer", "error")


@dataclass
class RunRow:
    """One task run in one format."""

    task: str
    format: str
    round: int
    difficulty: str
    category: str
    status: str
    steps: int
    tokens: int
    seconds: float
    model_seconds: float = 0.0  # of ``seconds``, waiting for the model
    load: float = -1.0  # the 1-minute load average when the run started
    answer: str = ""
    note: str = ""
    trace: str = ""


@dataclass
class BenchReport:
    """Every run's row, and the per-format summary."""

    model: str
    formats: list[str]
    rows: list[RunRow] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average, per round

    def summary(self) -> dict[str, dict[str, Any]]:
        return {fmt: summarize([r for r in self.rows if r.format == fmt])
                for fmt in self.formats}

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "formats": self.formats, "load": self.load,
                "summary": self.summary(), "runs": [asdict(r) for r in self.rows]}


def summarize(rows: list[RunRow]) -> dict[str, Any]:
    """Success rate (overall and per difficulty), medians, and failure categories."""
    if not rows:
        return {"runs": 0}
    by_level: dict[str, list[RunRow]] = {}
    for row in rows:
        if row.difficulty:
            by_level.setdefault(row.difficulty, []).append(row)
    return {
        "runs": len(rows),
        "success_rate": _rate(rows),
        "by_difficulty": {level: _rate(group) for level, group in by_level.items()},
        "median_steps": statistics.median(r.steps for r in rows),
        "median_tokens": statistics.median(r.tokens for r in rows),
        "median_seconds": round(statistics.median(r.seconds for r in rows), 2),
        "median_model_seconds": round(statistics.median(r.model_seconds for r in rows), 2),
        "categories": {c: sum(r.category == c for r in rows) for c in CATEGORIES},
    }


def _rate(rows: list[RunRow]) -> float:
    return round(sum(r.category == "pass" for r in rows) / len(rows), 3)


def categorize(task: BenchTask, result: RunResult) -> tuple[str, str]:
    """The run's category and a note saying why, for the report."""
    if result.status in ("error", "interrupted"):
        return "error", result.reason[:300]
    if result.status != "answered":
        acted = any(s.tool_calls or s.actions or s.execution_count is not None
                    for s in result.steps)
        return ("budget exhausted" if acted else "no answer"), result.reason[:300]
    if result.answer is None or result.answer == "":
        return "wrong answer", "the final answer was empty"
    try:
        right = bool(task.check(result.answer))
    except Exception as exc:  # an odd answer type: the checker says no, it does not crash
        return "wrong answer", f"the checker raised {type(exc).__name__}: {exc}"[:300]
    if not right:
        return "wrong answer", ""
    called = {c["name"] for s in result.steps for c in s.tool_calls if not c.get("error")}
    skipped = [n for n in task.required_names() if n not in called]
    if skipped:
        return "wrong answer", f"right, but never called {', '.join(skipped)} successfully"
    return "pass", ""


class Bench(Configurable):
    """Runs tasks in each action format against one model endpoint."""

    formats = List(
        Enum(list(FORMATS)), default_value=list(FORMATS), minlen=1,
        help="The action formats to compare (Agent.action_format): code, json, auto. "
        "Set by `codeact bench --formats` (BenchApp.formats owns the setting).",
    )
    repeat = Int(1, min=1, help="Rounds: each task runs this many times in each format."
                 ).tag(config=True)
    output_dir = Unicode(
        "", help="Folder for results.json and the traces (traces/<format>/<task>-<round>"
        ".ipynb). Empty: bench-results/<date-time> in the current folder.",
    ).tag(config=True)
    llm = Instance(LLM, help="The model; its endpoint is opened once and shared.")

    @default("llm")
    def _default_llm(self) -> LLM:
        return LLM(parent=self)

    @property
    def folder(self) -> Path:
        if not self.output_dir:
            self.output_dir = str(Path("bench-results") / time.strftime("%Y%m%d-%H%M%S"))
        return Path(self.output_dir)

    async def arun(self, tasks: list[BenchTask], on_row: Any = None) -> BenchReport:
        """Run every task ``repeat`` times in every format; write results.json."""
        if not tasks:
            raise BenchError("no tasks to run")
        await self.llm.astart()
        try:
            self._check_formats()
            report = BenchReport(self.llm.label, list(self.formats))
            for round_ in range(1, self.repeat + 1):
                report.load.append(_load())
                for task in tasks:
                    for fmt in self.formats:
                        row = await self.arun_task(task, fmt, round_)
                        report.rows.append(row)
                        if on_row is not None:
                            on_row(row)
                self._write(report)
        finally:
            await self.llm.aclose()
        return report

    run = run_sync(arun)

    def _check_formats(self) -> None:
        needs = [f for f in self.formats if f != "code"]
        if needs and not self.llm.supports_function_calling():
            raise BenchError(
                f"the formats {', '.join(needs)} need native function calling, and litellm "
                f"does not know {self.llm.label!r} to have it: bench --formats code only, or "
                "say the endpoint takes `tools` with --LLM.function_calling=yes")

    async def arun_task(self, task: BenchTask, fmt: str, round_: int = 1) -> RunRow:
        """One run of ``task`` in ``fmt``, on the endpoint ``llm`` holds: started by
        ``arun``, or attached by a caller that keeps a server of its own running."""
        trace = self.folder / "traces" / fmt / f"{task.name}-{round_}.ipynb"
        started, load = time.monotonic(), _load()
        try:
            # Settings come from the configuration (Agent.*, LLM.*), as for `codeact run`.
            agent = Agent(tools=task.tool_objects(), name=task.name, action_format=fmt,
                          trace_path=str(trace), parent=self.parent or self)
            agent.llm.attach(self.llm.endpoint)
            result = await agent.arun(task.prompt)
        except CodeActError as exc:
            return RunRow(task.name, fmt, round_, task.difficulty, "error", "error", 0, 0,
                          round(time.monotonic() - started, 2), load=load, note=str(exc)[:300],
                          trace=str(trace))
        category, note = categorize(task, result)
        return RunRow(task.name, fmt, round_, task.difficulty, category, result.status,
                      len(result.steps), result.prompt_tokens + result.completion_tokens,
                      round(result.duration, 2),
                      round(sum(s.llm_duration for s in result.steps), 2), load,
                      repr(result.answer)[:200], note, result.trace_path)

    def _write(self, report: BenchReport) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "results.json").write_text(json.dumps(report.to_json(), indent=2))


def _load() -> float:
    try:
        with open("/proc/loadavg") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def table(report: BenchReport) -> str:
    """The formats side by side: success, medians, and failure categories."""
    summary = report.summary()
    levels = sorted({r.difficulty for r in report.rows if r.difficulty})
    lines = [("", *report.formats)]
    lines.append(("success rate", *(f"{summary[f]['success_rate']:.0%}" for f in report.formats)))
    for level in levels:
        lines.append((f"  {level}", *(_level(summary[f], level) for f in report.formats)))
    for key, label in (("median_steps", "median steps"), ("median_tokens", "median tokens"),
                       ("median_seconds", "median seconds"),
                       ("median_model_seconds", "  of it, model")):
        lines.append((label, *(f"{summary[f][key]:g}" for f in report.formats)))
    for category in CATEGORIES[1:]:
        lines.append((category, *(str(summary[f]["categories"][category])
                                  for f in report.formats)))
    width = max(len(line[0]) for line in lines) + 2
    return "\n".join(line[0].ljust(width) + "".join(f"{c:>10}" for c in line[1:])
                     for line in lines)


def _level(summary: dict[str, Any], level: str) -> str:
    rate = summary["by_difficulty"].get(level)
    return "-" if rate is None else f"{rate:.0%}"
