"""Approval gates: a call of a tool that needs approval waits for a human, inside the cell.

The gate sits in the host's tool server, so kernel code cannot skip it. A call that needs
a human is *held*: the server answers it with a ticket instead of a result, the
kernel-side stub asks the host over the Jupyter stdin channel (the step clock pauses, as
for ``input()``), the human sees the tool, its arguments in full and the step's code, and
the stub sends the call again with the ticket, which the server now runs or records as
denied. A ticket is good for the one call (same tool, same arguments) of the same step.

Without a human (CI, ``--no-input``) nothing waits: the configured default decides.
Every decision is kept for the trace: what, by whom (human or policy), when, and why.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tool import Tool

# Kept equal to kernel_side/rpc.py's (a test checks it).
APPROVAL_PROMPT_MARK = "\x00codeact-approval:1\x00"
MAX_HELD = 32
MAX_EDIT_LINES = 500
YES = frozenset({"y", "yes", "a", "approve", "ok", "allow"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

Human = Callable[[str, bool], "str | Awaitable[str]"]


@dataclass
class GateVerdict:
    """Why the server does not run a call now: "approval" (held, with a ticket) or "denied"."""

    category: str
    message: str
    ticket: str = ""


@dataclass
class _Held:
    tool: str
    key: str
    arguments: Any
    state: str = "pending"  # approved | denied
    reason: str = ""


@dataclass
class ApprovalGate:
    """Decides on calls of tools with ``requires_approval``.

    ``mode``: "ask" (a human decides; without one, ``headless`` does), "allow" or "deny".
    ``timeout``: seconds a human may take; no answer by then denies the call.
    """

    mode: str = "ask"
    headless: str = "deny"
    timeout: float = 600.0
    step: int = 0
    code: str = ""
    human: bool = False
    _held: dict[str, _Held] = field(default_factory=dict)
    _decisions: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- the step's context (the agent's loop) ------------------------------------------

    def begin_step(self, step: int, code: str, human: bool) -> None:
        with self._lock:
            self.step, self.code, self.human = step, code, human
            self._held.clear()

    def end_step(self) -> list[dict[str, Any]]:
        """The decisions of the step; tickets not used by now are void."""
        with self._lock:
            decisions, self._decisions = self._decisions, []
            self._held.clear()
        return decisions

    # ---- the tool server's hook (worker threads) ----------------------------------------

    def check(self, tool: Tool, arguments: dict[str, Any],
              header: dict[str, Any]) -> GateVerdict | None:
        """None: run the call. Otherwise, why not (held for a human, or denied)."""
        if not getattr(tool, "requires_approval", False):
            return None
        key = _call_key(header)
        call = call_text(tool.name, arguments)
        ticket = header.get("approval")
        with self._lock:
            if isinstance(ticket, str) and ticket:
                held = self._held.pop(ticket, None)
                if held is None or held.tool != tool.name or held.key != key:
                    return GateVerdict("denied", f"{call}: no approval was given for this call "
                                       "(an approval is good for the one call it was asked for)")
                if held.state == "approved":
                    return None
                return GateVerdict("denied", held.reason or f"{call}: no human approved it")
            if self.mode in ("allow", "deny"):
                return self._by_policy(tool.name, arguments, self.mode == "allow", (
                    f"{call} needs approval and Agent.approval is {self.mode!r}"))
            if not self.human:
                return self._by_policy(tool.name, arguments, self.headless == "allow", (
                    f"{call} needs a human's approval and no one can answer in this run "
                    f"(no input); the default for such calls is {self.headless!r}"))
            if len(self._held) >= MAX_HELD:
                return GateVerdict("denied", f"{call}: {MAX_HELD} calls already wait for "
                                   "approval in this step")
            ticket = secrets.token_hex(12)
            self._held[ticket] = _Held(tool.name, key, _plain(arguments))
        return GateVerdict("approval", f"{tool.name} waits for a human's approval", ticket)

    def _by_policy(self, tool: str, arguments: dict[str, Any], allow: bool,
                   why: str) -> GateVerdict | None:
        reason = why + ("" if allow else ": it was not run")
        self._record(tool, _plain(arguments), allow, "policy", reason, 0.0)
        return None if allow else GateVerdict("denied", reason)

    def _record(self, tool: str, arguments: Any, approved: bool, by: str, reason: str,
                waited: float, **extra: Any) -> None:
        self._decisions.append({
            "step": self.step, "tool": tool, "arguments": arguments,
            "decision": "approved" if approved else "denied", "by": by,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason,
            "waited": round(waited, 3), **extra,
        })

    # ---- the stdin pump's hook (the agent's event loop) ---------------------------------

    async def answer(self, ticket: str, human: Human | None) -> str:
        """Ask the human about the held call ``ticket``; "approved" or "denied"."""
        with self._lock:
            held = self._held.get(ticket.strip())
        if held is None or held.state != "pending":
            return "denied"
        call = call_text(held.tool, held.arguments)
        started = time.monotonic()
        by, (approved, reason) = "human", await self._ask(human, self.prompt(held))
        if approved is None:
            by, approved = "policy", False
        elif not approved:
            reason = f"the human denied {call}" + (f": {reason}" if reason else "")
        waited = time.monotonic() - started
        with self._lock:
            held.state, held.reason = ("approved" if approved else "denied"), reason
            self._record(held.tool, held.arguments, approved, by, reason, waited)
        return held.state

    async def _ask(self, human: Human | None, prompt: str) -> tuple[bool | None, str]:
        """(True, "") approved, (False, why) denied by the human, (None, why) no answer."""
        if human is None:
            return None, "no human can answer in this run"
        try:
            reply = human(prompt, False)
            if inspect.isawaitable(reply):
                reply = await asyncio.wait_for(reply, self.timeout)
        except asyncio.TimeoutError:
            return None, f"no human answered within {self.timeout:g}s"
        except Exception as exc:  # a closed terminal, an interrupted prompt
            return None, f"asking the human failed ({type(exc).__name__}: {exc})"
        return parse_answer(str(reply))

    def prompt(self, held: _Held) -> str:
        arguments = json.dumps(held.arguments, indent=2, ensure_ascii=False, default=repr)
        code = "\n".join("    " + line for line in self.code.splitlines())
        return safe_text(
            f"\n──── approval needed (step {self.step}) ────\n"
            f"The agent's code calls {held.tool}, which needs your approval.\n"
            f"Arguments:\n{arguments}\nThe step's code:\n{code}\n"
            "Allow this call? [y/N, or say why not]: "
        )

    # ---- --confirm-code: the step's code itself -----------------------------------------

    async def confirm_code(self, step: int, code: str, human: Human | None,
                           ) -> tuple[str | None, dict[str, Any]]:
        """Show the step's code before it runs: (the code to run, or None), the decision."""
        self.step = step
        started = time.monotonic()
        if self.mode != "ask" or human is None:
            allow = self.mode == "allow" or (self.mode == "ask" and self.headless == "allow")
            reason = f"no human to confirm the code; the default is {'run' if allow else 'deny'}"
            return (code if allow else None), self._code_decision(
                "approved" if allow else "denied", "policy", reason, started)
        text = "\n".join("    " + line for line in code.splitlines())
        approved, reason = await self._ask(human, safe_text(
            f"\n──── step {step}: run this code? ────\n{text}\n"
            "[y]es / [e]dit / [n]o (or say why not): "))
        if approved is None:
            return None, self._code_decision("denied", "policy", reason, started)
        if approved:
            return code, self._code_decision("approved", "human", "", started)
        if reason.strip().lower() in ("e", "edit"):
            edited = await self._read_code(human)
            if edited is not None:
                return edited, self._code_decision("edited", "human", "", started, code=edited)
            reason = "the edit was abandoned"
        return None, self._code_decision("denied", "human", reason, started)

    async def _read_code(self, human: Human) -> str | None:
        lines: list[str] = []
        prompt = "Type the code to run instead; end with a line holding only '.':\n"
        for _ in range(MAX_EDIT_LINES):
            reply = human(prompt, False)
            line = str(await asyncio.wait_for(reply, self.timeout)
                       if inspect.isawaitable(reply) else reply)
            if line.strip() == ".":
                return "\n".join(lines) if any(x.strip() for x in lines) else None
            lines.append(line)
            prompt = "... "
        return None

    def _code_decision(self, decision: str, by: str, reason: str, started: float,
                       **extra: Any) -> dict[str, Any]:
        record = {"step": self.step, "tool": "<step code>", "decision": decision, "by": by,
                  "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason,
                  "waited": round(time.monotonic() - started, 3), **extra}
        with self._lock:
            self._decisions.append(record)
        return record


def parse_answer(reply: str) -> tuple[bool, str]:
    """A human's answer: yes, or no with the reason typed after it."""
    text = reply.strip()
    word = text.split(maxsplit=1)[0].lower().strip(".,!:") if text else ""
    if word in YES:
        return True, ""
    reason = re.sub(r"^(n|no|deny|denied)\b[\s,.:;-]*", "", text, flags=re.IGNORECASE)
    return False, reason.strip()


def call_text(tool: str, arguments: Any, width: int = 300) -> str:
    """``tool(a=1, b='x')``, shortened for messages."""
    if isinstance(arguments, dict):
        inner = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    else:
        inner = repr(arguments)
    text = f"{tool}({inner})"
    return text if len(text) <= width else text[: width - 4] + "...)"


def safe_text(text: str) -> str:
    """Text from the kernel for a terminal: control characters escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _call_key(header: dict[str, Any]) -> str:
    return json.dumps([header.get("args", []), header.get("kwargs", {})], sort_keys=True,
                      default=repr)


def _plain(arguments: dict[str, Any]) -> Any:
    try:
        return json.loads(json.dumps(arguments, default=repr))
    except (TypeError, ValueError, RecursionError):
        return {k: repr(v)[:1000] for k, v in arguments.items()}
