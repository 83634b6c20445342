"""JSON actions: the model calls the tools natively (function calling) instead of writing code.

``Agent.action_format`` "json" (only calls) or "auto" (calls or a code block). Each call
runs on the host through the agent's own tool server, as a call from the kernel would:
the step window, the argument check against the tool's signature, the approval gate and
the call record are the same code (``ToolServer.handle_request``). What the model wrote is
untrusted like anything from the kernel: an unknown function, arguments that are not a
JSON object, or argument names that are not identifiers become an error the model reads
(and the trace keeps), never an exception. A valid call is also rendered as the Python
call it amounts to, which the trace keeps as a code cell that replay re-runs against the
recorded results.
"""

from __future__ import annotations

import asyncio
import json
import keyword
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..kernel_side import codec
from ..kernels.stdin import StdinHandler
from ..models.llm import LLM
from ..tools.calls import error_reply
from ..tools.listing import function_name
from ..tools.serialize import FINAL_ANSWER, encode_value
from ..trace.notebook import tool_call_record
from .steps import record_refused

if TYPE_CHECKING:
    from ..tools.approval import ApprovalGate
    from ..tools.server import ToolServer
    from ..tools.tool import Tool
    from ..trace.record import StepRecord

MAX_CALLS = 16  # calls of one reply that are run; more are answered with an error
MAX_ARGUMENT_CHARS = 100_000
MAX_DEPTH = 32  # nesting of one call's arguments (the trace and replay render them)


@dataclass
class Action:
    """One function call of a reply, as the model sent it and as it went."""

    id: str
    name: str  # the tool's own name (dotted for an MCP tool), or the model's word for it
    arguments: str  # the raw JSON text
    source: str | None = None  # the Python call it amounts to; None when it is invalid
    result: str | None = None  # what the model was told, when the call succeeded
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.source is not None


def require_function_calling(action_format: str, llm: LLM) -> None:
    """ModelError naming the fix when ``action_format`` needs function calls the model
    does not make."""
    if action_format != "code" and not llm.supports_function_calling():
        raise ModelError(
            f"action_format {action_format!r} needs native function calling, and litellm "
            f"does not know {llm.label!r} to have it. Fix: use --action-format code, or, if "
            "the endpoint does take `tools` (vLLM, llama.cpp with a tool-call template, "
            "Ollama), say so with --LLM.function_calling=yes")


def parse_actions(calls: Sequence[dict[str, str]], tools: Sequence[Tool]) -> list[Action]:
    """The reply's calls, each checked: a known function, arguments a JSON object."""
    by_name = {function_name(t): t.name for t in tools}
    by_name[FINAL_ANSWER] = FINAL_ANSWER
    known = ", ".join(by_name)
    actions: list[Action] = []
    for index, call in enumerate(calls):
        action = Action(str(call.get("id") or f"call_{index}")[:100],
                        str(call.get("name") or "")[:100], str(call.get("arguments") or ""))
        if index >= MAX_CALLS:
            action.error = f"only {MAX_CALLS} function calls of one reply are run"
        elif action.name not in by_name:
            action.error = (f"there is no function {action.name!r}; the functions are: "
                            f"{known}")
        else:
            action.name = by_name[action.name]
            kwargs, action.error = _parse_arguments(action.name, action.arguments)
            if kwargs is not None:
                action.source = _python_call(action.name, kwargs)
        actions.append(action)
    return actions


def _parse_arguments(name: str, text: str) -> tuple[dict[str, Any] | None, str | None]:
    example = 'e.g. {"value": 42}' if name == FINAL_ANSWER else 'e.g. {"city": "Paris"}'
    if len(text) > MAX_ARGUMENT_CHARS:
        return None, f"the arguments of {name} are longer than {MAX_ARGUMENT_CHARS} characters"
    try:
        value = json.loads(text or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        return None, (f"the arguments of {name} are not valid JSON ({exc}); send them as "
                      f"one JSON object, {example}")
    if not isinstance(value, dict):
        return None, (f"the arguments of {name} must be a JSON object of named arguments, "
                      f"{example}; got {type(value).__name__}")
    if _depth(value) > MAX_DEPTH:
        return None, f"the arguments of {name} are nested more than {MAX_DEPTH} levels deep"
    if name == FINAL_ANSWER and list(value) != ["value"]:
        return None, f"final_answer takes one argument, value: {example}"
    bad = [k for k in value if not k.isidentifier() or keyword.iskeyword(k)]
    if bad:
        return None, f"{name} has no argument named {bad[0][:50]!r}"
    return value, None


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, without recursion (a hostile reply may nest deeply)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else (
            item if isinstance(item, list) else ())
        stack.extend((child, level + 1) for child in children)
    return deepest


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not JSON")


def _python_call(name: str, kwargs: dict[str, Any]) -> str:
    # repr of parsed JSON (str, int, float, bool, None, list, dict) is a Python literal.
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


async def run_actions(
    actions: list[Action], server: ToolServer, gate: ApprovalGate,
    stdin: StdinHandler | None, timeout: float, max_chars: int,
) -> None:
    """Run the valid calls at once (each on its own thread, each bounded by ``timeout``);
    fill in each action's result or error."""
    approvals = asyncio.Lock()  # one question to the human at a time
    await asyncio.gather(*(
        _run_one(a, server, gate, stdin, timeout, max_chars, approvals)
        for a in actions if a.valid))


async def _run_one(action: Action, server: ToolServer, gate: ApprovalGate,
                   stdin: StdinHandler | None, timeout: float, max_chars: int,
                   approvals: asyncio.Lock) -> None:
    kwargs = json.loads(action.arguments or "{}")
    header: dict[str, Any] = {"v": 1, "tool": action.name, "args": [], "kwargs": kwargs,
                              "accept": [], "token": server.token}
    if action.name == FINAL_ANSWER:
        value, _, notes = encode_value(kwargs.get("value"), []) if "value" in kwargs else (
            None, [], [])
        header.update(kwargs={"value": value} if "value" in kwargs else kwargs, notes=notes)
    reply = await _request(server, header, timeout)
    error = reply.get("error") if isinstance(reply.get("error"), dict) else None
    if error is not None and error.get("category") == "approval":
        async with approvals:
            await gate.answer(str(error.get("ticket", "")), stdin)
        reply = await _request(server, {**header, "approval": error.get("ticket")}, timeout)
        error = reply.get("error") if isinstance(reply.get("error"), dict) else None
    if reply.get("ok"):
        action.result = "recorded" if action.name == FINAL_ANSWER else _cut(
            result_text(reply.get("result")), max_chars)
    else:
        error = error or {}
        action.error = f"{error.get('type', 'Error')}: {error.get('message', 'the call failed')}"


async def _request(server: ToolServer, header: dict[str, Any],
                   timeout: float) -> dict[str, Any]:
    """``server.handle_request`` on a daemon thread (a hung tool cannot keep the process
    from exiting), given up after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[bytes]] = loop.create_future()

    def work() -> None:
        try:
            # The token frame first, as every request to the server carries it.
            frames = server.handle_request([server.token.encode(), json.dumps(header).encode()])
        except BaseException as exc:  # handle_request answers errors; this is a safety net
            frames = error_reply("InternalError", f"{type(exc).__name__}: {exc}", "protocol")
        loop.call_soon_threadsafe(_settle, done, frames)

    threading.Thread(target=work, daemon=True, name="codeact-json-call").start()
    try:
        frames = await asyncio.wait_for(done, timeout)
    except asyncio.TimeoutError:
        return {"ok": False, "error": {"type": "TimeoutError", "message": (
            f"host tool {header['tool']} did not finish within {timeout:g}s (it may still be "
            "running on the host)")}}
    reply = json.loads(frames[0])
    return reply if isinstance(reply, dict) else {"ok": False, "error": {}}


def _settle(done: asyncio.Future[list[bytes]], frames: list[bytes]) -> None:
    if not done.done():  # not given up on (a timeout cancels it)
        done.set_result(frames)


def result_text(obj: Any) -> str:
    """A tool's result as the model reads it: strings as they are, the rest as JSON."""
    try:
        value = codec.Decoder([]).decode(obj)
    except Exception:  # a value that needed blobs: its encoded form says what it is
        value = obj
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=repr)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def _in_call_order(records: list[dict[str, Any]],
                   actions: Sequence[Action]) -> list[dict[str, Any]]:
    """The server's records (in the order the calls finished) in the order of the calls,
    which is the order replay serves them in; records no call matches stay last."""
    left = list(records)
    ordered: list[dict[str, Any]] = []
    for action in actions:
        match = next((r for r in left if r["name"] == action.name), None)
        if action.valid and match is not None:
            left.remove(match)
            ordered.append(match)
    return ordered + left


def calls_text(actions: Sequence[Action]) -> str:
    """The calls as Python, for an approval prompt (the code a human is shown)."""
    return "\n".join(a.source or f"# invalid call of {a.name!r}" for a in actions)


def assistant_message(text: str, actions: Sequence[Action]) -> dict[str, Any]:
    """The reply as the conversation keeps it, with its calls (their ids answer to them)."""
    return {"role": "assistant", "content": text or None, "tool_calls": [
        {"id": a.id, "type": "function",
         "function": {"name": a.name.replace(".", "__"), "arguments": a.arguments}}
        for a in actions]}


def tool_messages(actions: Sequence[Action]) -> list[dict[str, Any]]:
    """One answer per call, as the provider requires: its result, or its error."""
    return [{"role": "tool", "tool_call_id": a.id,
             "content": (a.result or "") if a.error is None else f"Error: {a.error}"}
            for a in actions]


async def json_step(
    agent: Any, record: StepRecord, actions: list[Action],
    emit: Callable[[str, Any], None], stdin: StdinHandler | None,
) -> None:
    """Run a reply's function calls as the step ``record``; the conversation gets the
    reply and one answer per call."""
    server: ToolServer = agent.tool_server
    timeout = min(agent.tool_call_timeout, agent.step_timeout, max(agent.clock.left(), 0.5))
    agent.hub.begin_step(record.step, calls_text(actions), human=stdin is not None)
    emit("code", calls_text(actions))
    trace_path = agent.trace.path
    # Sub-agents called as functions get what is left of the step, as from code.
    agent.sub_agents.bound(timeout, agent.max_steps,
                           trace_path.parent / f"{trace_path.stem}.subagents",
                           agent._otel_context())
    server.open_step(record.step)
    started = time.monotonic()
    try:
        await run_actions(actions, server, agent.hub.gate, stdin, timeout,
                          agent.max_output_chars)
    finally:
        server.close_step()
        record.exec_duration = round(time.monotonic() - started, 4)  # the calls, on the host
        record.tool_calls = _in_call_order(
            [tool_call_record(c) for c in server.drain_calls()], actions)
        record_refused(agent.trace, server)
        record.approvals += agent.hub.gate.end_step()
        record.actions = [asdict(a) for a in actions]
    agent.sub_agents.link(record.tool_calls, trace_path.parent)
    record.status = "ok" if all(a.error is None for a in actions) else "error"
    record.reason = "; ".join(f"{a.name}: {a.error}" for a in actions if a.error)[:2000]
    for message in tool_messages(actions):
        emit("observation", message["content"])
    agent.messages.extend(tool_messages(actions))
