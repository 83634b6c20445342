"""What the agent does when a small model goes wrong: notes that carry the facts it missed,
cycle detection over the whole run, and the pruned context that breaks a cycle.

Measured on the unseen tasks' tuning half (benchmarks/bench_local_model.py): a model that
guessed a tool's result shape (``for f in departures(...)`` on a dict) resends the same
code while the traceback alone is in view; the shape of what the tools really returned,
and a tool's own error message put first, are what its next reply can use.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets import Bool, Float, Int
from traitlets.config import Configurable

SHAPE_CHARS = 400  # per tool, in a note


class RecoveryOptions(Configurable):
    """The agent's settings for recovering from a small model's mistakes (Agent's traits)."""

    repair_stubs = Bool(
        True, help="Run a reply that redefines a tool (def departures(...)) or stores into a "
        "tool's name (x = x(...)) with those parts dropped or renamed, instead of refusing "
        "it; the trace keeps the original code and says what was repaired.",
    ).tag(config=True)
    show_tool_results = Bool(
        True, help="When a step fails, tell the model the shape of what each tool returned "
        "in it (type, keys, lengths, a first item) and put a tool's own error message first.",
    ).tag(config=True)
    break_cycles = Bool(
        True, help="When a reply repeats an earlier failed or blocked one (any period), drop "
        "the failed attempts from the conversation and leave one compact summary of what "
        "failed and why, so that the next reply starts from a different context.",
    ).tag(config=True)
    check_answers = Bool(
        True, help="Hold back a degenerate final answer once (None, empty, NaN, a "
        "placeholder string, or 0 after a failed step) and ask the model to check it; the "
        "same answer sent again is accepted.",
    ).tag(config=True)
    resample_repeats = Int(
        3, min=0, help="When a reply has no code (and calls no function), code without a "
        "statement, or code that already failed or was blocked in this run (action_format "
        "json: when it calls no function), ask again at "
        "resample_temperature (seeds 1, 2, ...) up to this many times, and go on with the "
        "first reply that does something new; the trace keeps what was replaced. A sample "
        "starts only while the run has as much time left as the greedy reply took, and the "
        "last call for an answer is never sampled again. 0: go on with every reply as it "
        "is.",
    ).tag(config=True)
    resample_temperature = Float(
        0.7, min=0.0, help="Temperature of the replies resample_repeats asks for.",
    ).tag(config=True)
    max_run_seconds = Float(
        600.0, help="Wall-clock seconds one run may take; no step starts after it and a "
        "running step gets at most the time left (status 'timeout'). 0: no limit.",
    ).tag(config=True)
    answer_on_budget = Bool(
        True, help="When the step budget or the run's time limit runs out without a final "
        "answer, make one last call: the model is told so, shown the kernel's variables and "
        "asked for final_answer() from what the run computed (as smolagents does at "
        "max_steps). The trace marks that step; an answer it gives ends the run as "
        "answered. False: the run ends with status max_steps or timeout.",
    ).tag(config=True)
    last_call_seconds = Float(
        20.0, min=0.0, help="With answer_on_budget, the seconds of the run's time limit "
        "held back for the last call (at most a quarter of the limit): a step starts, and "
        "runs, only while more than this is left, and starts only with at least the time "
        "the run's quickest reply took; time too short for a step goes to the last call.",
    ).tag(config=True)
    preimport = Bool(
        True, help="Import np (numpy), pd (pandas), math, statistics, json, re and "
        "collections in the kernel at startup, as a notebook user would have, and say so in "
        "the system prompt ($preimported).",
    ).tag(config=True)
    max_prompt_tokens = Int(
        6000, help="Estimated prompt size (characters / 4) past which the oldest step "
        "observations of the run are cut to their first and last lines, keeping the prompt "
        "bounded (the trace keeps them whole). 0: never compact.",
    ).tag(config=True)


# ---- shapes of tool results ---------------------------------------------------------------


def shape(value: Any, depth: int = 0) -> str:
    """A short description of a JSON-like value's structure, with a sample."""
    if isinstance(value, dict):
        if depth >= 2 or not value:
            return f"dict with keys {_keys(value)}" if value else "empty dict {}"
        parts = [f"{k!r}: {shape(v, depth + 1)}" for k, v in list(value.items())[:8]]
        more = ", ..." if len(value) > 8 else ""
        return "dict {" + ", ".join(parts) + more + "}"
    if isinstance(value, (list, tuple)):
        kind = type(value).__name__
        if not value:
            return f"empty {kind}"
        first = value[0]
        if isinstance(first, dict):
            return f"{kind} of {len(value)} dicts with keys {_keys(first)}, first {_short(first)}"
        return f"{kind} of {len(value)} {type(first).__name__}, first {_short(first)}"
    return f"{type(value).__name__} {_short(value)}"


def _keys(d: dict[Any, Any]) -> str:
    return "[" + ", ".join(repr(k) for k in list(d)[:10]) + (", ...]" if len(d) > 10 else "]")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tool_results_note(calls: Sequence[dict[str, Any]]) -> str:
    """The tools' own errors (their advice), then the shape of each tool's first result."""
    advice: list[str] = []
    shapes: dict[str, str] = {}
    for call in calls:
        name = str(call.get("name", ""))
        if name == "final_answer":
            continue
        args = _call_args(call.get("arguments"))
        if call.get("error"):
            advice.append(f"- {name}({args}) failed: {str(call['error'])[:300]}")
        elif name not in shapes and "value" in call:
            shapes[name] = f"- {name}({args}) returned {shape(call['value'])}"[:SHAPE_CHARS]
    text = ""
    if advice:
        text += ("The tool said what is wrong; do what its message says:\n"
                 + "\n".join(dict.fromkeys(advice)) + "\n")
    if shapes:
        text += "What the tools returned in this step:\n" + "\n".join(shapes.values()) + "\n"
    return text


def _call_args(arguments: Any) -> str:
    if not isinstance(arguments, dict):
        return ""
    return ", ".join(f"{k}={_short(v, 40)}" for k, v in arguments.items())


# ---- cycles -------------------------------------------------------------------------------


@dataclass
class Attempt:
    """A failed or blocked step, as the cycle detector and the summary remember it."""

    step: int
    code: str
    outcome: str  # one line: the error, or why it was blocked


@dataclass
class CycleTracker:
    """Failed and blocked attempts of one run; a new one that repeats any earlier one is a
    cycle, whatever its period."""

    attempts: list[Attempt] = field(default_factory=list)
    tool_shapes: dict[str, str] = field(default_factory=dict)
    opening: int = 0  # messages[:opening] (system prompt, task) stay when a cycle is pruned
    answer_checked: bool = False  # a degenerate answer is held back once per run

    def failed(self, options: RecoveryOptions, record: Any, code: str, outcome: str,
               messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Remember a failed or blocked attempt; the messages to go on with: when it
        repeats an earlier one, the attempts are replaced by a summary (a greedy model
        given the same context sends the same reply)."""
        earlier = self.add(record.step, code, outcome)
        if earlier is None or not options.break_cycles:
            return messages
        record.cycle_of = earlier.step
        return prune(messages, self.opening, self.summary())

    def annotate(self, options: RecoveryOptions, record: Any, ok: bool, text: str) -> str:
        """A step's observation with what was repaired first and, when it failed, the
        tools' advice and result shapes after it."""
        if record.repairs:
            text = "Note: " + "; ".join(record.repairs) + ".\n" + text
        note = tool_results_note(record.tool_calls) if options.show_tool_results and not ok \
            else ""
        return text + (f"\n\n{note.rstrip()}" if note else "")

    def after_step(self, options: RecoveryOptions, record: Any, result: Any, code: str,
                   messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Remember what the step's tools returned, and the step if it failed."""
        self.note_tools(record.tool_calls)
        if result.ok:
            return messages
        error = result.error
        outcome = f"{error.ename}: {error.evalue}" if error else result.reason or result.status
        return self.failed(options, record, code, outcome, messages)

    def held_back(self, options: RecoveryOptions, server: Any, record: Any,
                  messages: list[dict[str, Any]]) -> bool:
        """Hold the final answer ``server`` has back, once per run, when it is degenerate:
        clear it, say why on the step ``record`` and ask the model to check (the same
        answer sent again is accepted)."""
        answer = server.final_answer
        why = "" if answer is None else self.why_hold_back(options, answer.value, record.step)
        if not why:
            return False
        server.reset_final_answer()
        record.reason = f"final answer held back: {why}"
        messages.append({"role": "user", "content": answer_check_message(answer.value, why)})
        return True

    def why_hold_back(self, options: RecoveryOptions, value: Any, step: int) -> str:
        """Why the answer ``value`` given at ``step`` is held back, once per run ('' to
        accept it)."""
        if not options.check_answers or self.answer_checked:
            return ""
        why = degenerate(value, after_failure=any(a.step < step for a in self.attempts))
        self.answer_checked = bool(why)
        return why

    def repeated(self, code: str) -> Attempt | None:
        """The earlier failed or blocked attempt ``code`` repeats, if any."""
        key = _normalized(code)
        return next((a for a in self.attempts if _normalized(a.code) == key), None)

    def add(self, step: int, code: str, outcome: str) -> Attempt | None:
        """Remember a failed attempt; return the earlier one it repeats, if any."""
        earlier = self.repeated(code)
        self.attempts.append(Attempt(step, code, outcome))
        return earlier

    def note_tools(self, calls: Sequence[dict[str, Any]]) -> None:
        for call in calls:
            name = str(call.get("name", ""))
            if name != "final_answer" and "value" in call and not call.get("error"):
                self.tool_shapes.setdefault(
                    name, f"- {name}({_call_args(call.get('arguments'))}) returned "
                    f"{shape(call['value'])}"[:SHAPE_CHARS])

    def summary(self) -> str:
        """One message standing for all the failed attempts it replaces."""
        seen: dict[str, Attempt] = {}
        for attempt in self.attempts:
            seen.setdefault(_normalized(attempt.code), attempt)
        lines = ["Your earlier attempts failed; their code is gone from this conversation "
                 "and must not be sent again:"]
        for attempt in seen.values():
            first = attempt.code.strip().splitlines()[0][:100] if attempt.code.strip() else ""
            lines.append(f"- step {attempt.step}: `{first}` ... -> {attempt.outcome[:200]}")
        if self.tool_shapes:
            lines.append("Facts from the tools so far (use these shapes, do not guess):")
            lines += list(self.tool_shapes.values())
        lines.append("Variables you assigned still exist in the kernel. Write NEW code that "
                     "avoids these errors: one sentence, then one ```python block.")
        return "\n".join(lines)


def _normalized(code: str) -> str:
    return " ".join(code.split())


def prune(messages: list[dict[str, Any]], keep: int, summary: str) -> list[dict[str, Any]]:
    """The first ``keep`` messages (system prompt and task), then ``summary``."""
    return [*messages[:keep], {"role": "user", "content": summary}]


def error_line(outputs_text: str) -> str:
    """The last line of a traceback-like text that names an error."""
    for line in reversed(outputs_text.strip().splitlines()):
        if "Error" in line or "Exception" in line:
            return line.strip()
    lines = outputs_text.strip().splitlines()
    return lines[-1].strip() if lines else ""


@dataclass
class RunClock:
    """A run's wall clock: its deadline (time.monotonic(); None: no limit) and the
    seconds of it held back for the last call for an answer."""

    deadline: float | None = None
    reserve: float = 0.0
    quickest: float = 0.0  # the run's quickest model reply so far, in seconds

    @classmethod
    def start(cls, options: RecoveryOptions, deadline: float | None) -> RunClock:
        """From now: the earlier of an orchestrator's ``deadline`` and max_run_seconds;
        with answer_on_budget, last_call_seconds held back, but never more than a
        quarter of the run's time, so that a short run still has steps."""
        ends = deadline
        if options.max_run_seconds > 0:
            own = time.monotonic() + options.max_run_seconds
            ends = own if deadline is None else min(deadline, own)
        if not options.answer_on_budget or ends is None:
            return cls(ends)
        return cls(ends, min(options.last_call_seconds,
                             max(ends - time.monotonic(), 0.0) / 4))

    def left(self) -> float:
        """Seconds a step may still use: to the deadline, less the reserve."""
        if self.deadline is None:
            return float("inf")
        return self.deadline - self.reserve - time.monotonic()

    def replied(self, seconds: float) -> None:
        """A model reply took ``seconds``."""
        self.quickest = seconds if self.quickest <= 0 else min(self.quickest, seconds)

    def room_for_step(self) -> bool:
        """Whether a step may start: while time is left, and, when a last call follows,
        only with as much as the run's quickest reply. On the tuning half a step begun
        with 4 to 17 s left was always cut before its reply came, and took that time
        from the last call behind it."""
        left = self.left()
        return left > 0 and (self.reserve <= 0 or left >= self.quickest)

    def shortfall(self) -> str:
        """Why no step starts though time is left ('' when none is)."""
        left = self.left()
        return (f"{left:.1f} s were left, less than the run's quickest reply "
                f"({self.quickest:.1f} s), so they went to the last call" if left > 0 else "")

    def release(self) -> None:
        """The last call has begun: the reserve is its to use."""
        self.reserve = 0.0


def compact(messages: list[dict[str, Any]], start: int, budget_tokens: int) -> int:
    """Cut the oldest observations from ``messages[start:]`` (the last two messages stay
    whole) until the estimate fits ``budget_tokens`` (0: no budget); return how many were
    cut."""
    if budget_tokens <= 0:
        return 0
    def size() -> int:
        return sum(len(str(m.get("content", ""))) for m in messages) // 4

    cut = 0
    for message in messages[start:-2]:
        if size() <= budget_tokens:
            break
        text = message.get("content")
        if message.get("role") != "user" or not isinstance(text, str) \
                or text.startswith(COMPACTED):
            continue
        lines = text.splitlines()
        if len(lines) > 4:
            message["content"] = "\n".join([f"{COMPACTED} {lines[0]}", lines[1], "...",
                                             *lines[-2:]])
            cut += 1
    return cut


COMPACTED = "[compacted]"


_PLACEHOLDER_WORDS = ("default", "placeholder", "todo", "xxx", "your_")


def degenerate(value: Any, after_failure: bool) -> str:
    """Why ``value`` looks like no answer at all ('' when it looks like one)."""
    if value is None:
        return "None"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, (str, list, tuple, dict, set)) and len(value) == 0:
        return "empty"
    if isinstance(value, str) and any(w in value.lower() for w in _PLACEHOLDER_WORDS):
        return "a placeholder"
    if isinstance(value, (list, tuple)) and all(v is None for v in value):
        return "a list of None"
    if after_failure and not isinstance(value, bool) and isinstance(value, (int, float)) \
            and value == 0:
        return "0 after a failed step (a .get(key, 0) default?)"
    return ""


def answer_check_message(value: Any, why: str) -> str:
    return (f"final_answer received {_short(value)}, which is {why}: it looks like no "
            "answer. The task has a real answer. Check where the value came from (print "
            "the data) and fix the code. If it really is the answer, call "
            f"final_answer({_short(value)}) again.")
