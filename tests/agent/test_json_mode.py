"""action_format "json" and "auto": native function calls through litellm's real OpenAI path
(the scripted server answers with real ``tool_calls``), run on the host through the tool
server, recorded as trace cells of their own kind, and replayed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from codeact_kernel import Agent, ModelError, tool
from codeact_kernel.agent.replay import Replayer
from codeact_kernel.models.blocks import first_block_end
from codeact_kernel.models.llm import LLM, hermes_tool_calls
from codeact_kernel.models.provider import Endpoint
from codeact_kernel.terminal import demo
from codeact_kernel.trace.actions import INVALID_CALL_TAG, TOOL_CALL_ROLE
from codeact_kernel.trace.report import show

from ..helpers import fence, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer, call, tool_calls


def _agent(llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, fmt: str,
           **kw: Any) -> Agent:
    agent = make_agent(llm, tmp_path, runtime_dir, action_format=fmt, **kw)
    agent.llm.function_calling = "yes"  # the scripted server takes `tools`
    return agent


def _call_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.metadata.get("codeact", {}).get("role") == TOOL_CALL_ROLE]


def _tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def test_json_run_parallel_calls_trace_show_and_replay(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(
        tool_calls(call("search_cities", {"country": "France"}), text="First the cities."),
        tool_calls(call("get_population", {"city": "Paris"}),
                   call("get_population", {"city": "Lyon"})),
        tool_calls(call("final_answer", {"value": 2_102_650 + 522_250})),
    )
    result = _agent(llm, tmp_path, runtime_dir, "json").run("Paris and Lyon together?")
    assert result.status == "answered", result.reason
    assert result.answer == demo.get_population("Paris") + demo.get_population("Lyon")
    assert len(result.steps) == 3

    # The request carried function specs built from the @tool signatures and docstrings.
    specs = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
    assert set(specs) == {"search_cities", "get_population", "final_answer"}
    assert specs["get_population"]["parameters"]["properties"]["city"]["type"] == "string"
    assert specs["get_population"]["parameters"]["required"] == ["city"]
    assert "```python" not in llm.requests[0]["messages"][0]["content"]
    # Each call got its own answer, matched by id, in the next request.
    answers = _tool_messages(llm.requests[2])
    assert [json.loads(a["content"]) for a in answers[-2:]] == [
        demo.get_population("Paris"), demo.get_population("Lyon")]
    assert "Lyon" in answers[0]["content"]  # search_cities' list, as JSON
    ids = [c["id"] for m in llm.requests[2]["messages"] for c in m.get("tool_calls") or []]
    assert [a["tool_call_id"] for a in answers] == ids

    nb = load_trace(result.trace_path)
    assert nb.metadata["codeact"]["agent"]["action_format"] == "json"
    cells = _call_cells(nb)
    assert [c.source for c in cells] == [
        "search_cities(country='France');", "get_population(city='Paris');",
        "get_population(city='Lyon');", "final_answer(value=2624900);"]
    assert all(c.cell_type == "code" and not c.outputs for c in cells)
    step2 = next(c for c in nb.cells if c.metadata.get("codeact", {}).get("step") == 2
                 and c.metadata["codeact"].get("actions"))
    assert [t["arguments"] for t in step2.metadata["codeact"]["tool_calls"]] == [
        {"city": "Paris"}, {"city": "Lyon"}]

    text = show(result.trace_path)
    assert "step 2: ok (2 function calls) llm" in text
    assert "tool get_population(city='Lyon') -> 522250" in text

    report = Replayer().replay(result.trace_path)
    assert report.all_same, report.to_json()
    assert report.counts() == {"same": 4}


def test_bad_calls_are_errors_for_the_model_never_a_crash(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(
        tool_calls(call("get_weather", {"city": "Paris"}),
                   call("get_population", '{"city": "Paris"'),
                   call("get_population", {"city": 3}),
                   call("get_population", "[1, 2]"),
                   call("final_answer", {"answer": 1}),
                   call("get_population", '{"city": ' + "[" * 40 + "]" * 40 + "}")),
        tool_calls(call("get_population", {"city": "Atlantis"})),
        tool_calls(call("final_answer", {"value": "done"})),
    )
    result = _agent(llm, tmp_path, runtime_dir, "json").run("Population of Paris?")
    assert result.status == "answered", result.reason
    first = result.steps[0]
    assert first.status == "error"
    errors = [m["content"] for m in _tool_messages(llm.requests[1])]
    assert "there is no function 'get_weather'; the functions are: search_cities, " \
        "get_population, final_answer" in errors[0]
    assert "not valid JSON" in errors[1] and 'e.g. {"city": "Paris"}' in errors[1]
    assert "argument 'city' must be str, got int 3" in errors[2]
    assert "must be a JSON object of named arguments" in errors[3]
    assert "final_answer takes one argument, value" in errors[4]
    assert "nested more than 32 levels deep" in errors[5]
    # The tool's own exception, on the next step, reaches the model as an error too.
    assert "Atlantis" in _tool_messages(llm.requests[2])[-1]["content"]
    assert _tool_messages(llm.requests[2])[-1]["content"].startswith("Error: KeyError")

    nb = load_trace(result.trace_path)
    cells = _call_cells(nb)
    invalid = [c for c in cells if INVALID_CALL_TAG in c.metadata.get("tags", [])]
    assert [json.loads(c.source)["name"] for c in invalid] == [
        "get_weather", "get_population", "get_population", "final_answer", "get_population"]
    assert all(c.cell_type == "raw" for c in invalid)
    wrong_type = next(c for c in cells if c.cell_type == "code")
    assert wrong_type.source == "get_population(city=3);"
    assert wrong_type.outputs[0]["output_type"] == "error"
    text = show(result.trace_path)
    assert "get_weather" in text and "NOT MADE" in text

    report = Replayer().replay(result.trace_path)
    assert report.all_same, report.to_json()
    assert report.counts() == {"invalid-call": 5, "error-reproduced": 2, "same": 1}


def test_auto_mode_takes_calls_and_code(llm: ScriptedLLMServer, tmp_path: Path,
                                        runtime_dir: Path) -> None:
    llm.enqueue(
        tool_calls(call("search_cities", {"country": "Japan"})),
        fence("pops = {c: get_population(c) for c in search_cities('Japan')}\n"
              "final_answer(max(pops, key=pops.get))"),
    )
    result = _agent(llm, tmp_path, runtime_dir, "auto").run("Largest Japanese city?")
    assert result.status == "answered", result.reason
    assert result.answer == "Tokyo"
    assert result.steps[0].actions and result.steps[0].code is None
    assert result.steps[1].code is not None and not result.steps[1].actions
    system = llm.requests[0]["messages"][0]["content"]
    assert "def get_population" in system and "final_answer" in system
    assert llm.requests[0]["tools"]

    report = Replayer().replay(result.trace_path)
    assert report.all_same, report.to_json()
    assert report.counts() == {"same": 2}


def test_auto_reply_with_calls_and_code_runs_the_calls_only(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(
        tool_calls(call("get_population", {"city": "Paris"}),
                   text=fence("final_answer('from code')")),
        tool_calls(call("final_answer", {"value": "from a call"})),
    )
    result = _agent(llm, tmp_path, runtime_dir, "auto").run("Population of Paris?")
    assert result.answer == "from a call"
    notes = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "user"]
    assert "the code did NOT" in notes[-1]


def test_json_text_reply_is_nudged(llm: ScriptedLLMServer, tmp_path: Path,
                                   runtime_dir: Path) -> None:
    llm.enqueue("The answer is 4.", tool_calls(call("final_answer", {"value": 4})))
    result = _agent(llm, tmp_path, runtime_dir, "json", resample_repeats=0).run("2+2?")
    assert result.answer == 4
    assert result.steps[0].status == "no-code"
    assert "called no function" in llm.requests[1]["messages"][-1]["content"]


def test_json_text_reply_is_sampled_again_within_its_step(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue("The answer is 4.", "Four.", tool_calls(call("final_answer", {"value": 4})))
    result = _agent(llm, tmp_path, runtime_dir, "json").run("2+2?")
    assert result.answer == 4 and len(result.steps) == 1
    assert result.steps[0].resampled == {"reason": "no call", "repeated_step": None,
                                         "samples": 2, "found": True,
                                         "original": "The answer is 4."}
    assert [r.get("seed") for r in llm.requests] == [None, 1, 2]


def test_json_calls_pass_the_approval_gate(llm: ScriptedLLMServer, tmp_path: Path,
                                           runtime_dir: Path) -> None:
    @tool(requires_approval=True)
    def delete_city(city: str) -> str:
        """Delete a city.

        Args:
            city: Its name.
        """
        raise AssertionError("a denied call must not run")

    llm.enqueue(tool_calls(call("delete_city", {"city": "Paris"})),
                tool_calls(call("final_answer", {"value": "no"})))
    result = _agent(llm, tmp_path, runtime_dir, "json", tools=[delete_city],
                    approval="deny").run("Delete Paris")
    assert result.answer == "no"
    assert result.steps[0].approvals[0]["decision"] == "denied"
    assert "ToolDenied" in _tool_messages(llm.requests[1])[0]["content"]


def test_model_without_function_calling_gets_the_fix(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    agent = make_agent(llm, tmp_path, runtime_dir, action_format="json")
    with pytest.raises(ModelError, match=r"--action-format code.*function_calling=yes"):
        agent.run("anything")
    assert not llm.requests  # nothing was sent, no kernel was started


def test_whole_replies_with_tool_calls(llm: ScriptedLLMServer) -> None:
    """Without a token callback litellm asks for the whole reply (no streaming)."""
    llm.enqueue(tool_calls(call("get_population", {"city": "Paris"}, "c1"),
                           call("final_answer", '{"value": 1', "c2"), text="hm"))
    model = LLM(model="openai/scripted", api_base=llm.api_base, max_retries=0)
    asyncio.run(model.astart())
    completion = asyncio.run(model.complete([{"role": "user", "content": "x"}],
                                      tools=[{"type": "function", "function": {
                                          "name": "f", "parameters": {"type": "object"}}}]))
    assert not llm.requests[0].get("stream")
    assert completion.text == "hm"
    assert completion.tool_calls == [
        {"id": "c1", "name": "get_population", "arguments": '{"city": "Paris"}'},
        {"id": "c2", "name": "final_answer", "arguments": '{"value": 1'}]


def test_calls_written_as_hermes_text_are_parsed(llm: ScriptedLLMServer, tmp_path: Path,
                                                runtime_dir: Path) -> None:
    """The embedded model's server passes the tools to Qwen's chat template, which makes
    the model write <tool_call> text; an endpoint that says so gets it parsed."""
    llm.enqueue(
        'I look it up.\n<tool_call>\n{"name": "get_population", "arguments": {"city": "Lyon"}}'
        '\n</tool_call>\n<tool_call>\n{"name": "get_population", "arguments": {"city": }\n'
        '</tool_call>',
        '<tool_call>\n{"name": "final_answer", "arguments": {"value": 522250}}\n</tool_call>',
    )
    agent = make_agent(llm, tmp_path, runtime_dir, action_format="json")
    agent.llm.attach(Endpoint("openai/scripted", llm.api_base, tool_call_format="hermes"))
    result = agent.run("Population of Lyon?")  # function_calling "auto": the endpoint says
    assert result.answer == 522250, result.reason
    first = result.steps[0]
    assert first.model_text == "I look it up."
    assert [a["name"] for a in first.actions] == ["get_population", "get_population"]
    assert first.actions[0]["result"] == "522250"
    assert "not valid JSON" in first.actions[1]["error"]


def test_hermes_parser_keeps_what_it_cannot_read() -> None:
    text, calls = hermes_tool_calls('a <tool_call>{"name": "f", "arguments": "{}"}</tool_call>'
                                    ' b <tool_call>not json')
    assert text == "a  b"
    assert calls == [{"id": "call_0", "name": "f", "arguments": "{}"},
                     {"id": "call_1", "name": "", "arguments": "not json"}]
    assert hermes_tool_calls("no calls here") == ("no calls here", [])
    # Without the tags, as the embedded model writes them (doubled braces and all).
    text, calls = hermes_tool_calls(
        'Call: {{"name": "molar_mass", "arguments": {"formula": "NaCl"}}} and '
        '{"name": "f", "arguments": {}}')
    assert text == "Call:  and"
    assert calls == [{"id": "call_0", "name": "molar_mass", "arguments": '{"formula": "NaCl"}'},
                     {"id": "call_1", "name": "f", "arguments": "{}"}]
    # A dict in code is code, not a call.
    code = '```python\nd = {"name": "x", "arguments": 1}\n```'
    assert hermes_tool_calls(code) == (code, [])
    assert hermes_tool_calls('{"name": "x"}') == ('{"name": "x"}', [])


def test_a_text_call_ends_the_reply_like_a_code_block(llm: ScriptedLLMServer) -> None:
    """With stop_after_first_block (the embedded model), a reply is cut after its first
    call written as text: the model would go on to imagine the result."""
    llm.enqueue('{{"name": "get_population", "arguments": {"city": "Lyon"}}}\n'
                'The result is 5. {"name": "final_answer", "arguments": {"value": 5}}')
    model = LLM(model="openai/scripted", max_retries=0)
    model.attach(Endpoint("openai/scripted", llm.api_base, stop_after_first_block=True,
                          tool_call_format="hermes"))
    asyncio.run(model.astart())
    completion = asyncio.run(model.complete(
        [{"role": "user", "content": "x"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]))
    assert llm.requests[0]["stream"]
    assert completion.tool_calls == [
        {"id": "call_0", "name": "get_population", "arguments": '{"city": "Lyon"}'}]
    assert "result is 5" not in completion.text
    # Without tools, the same endpoint cuts at a code block only, as before.
    assert first_block_end("{x}\n```python\n1\n```\nmore") == len("{x}\n```python\n1\n```")
