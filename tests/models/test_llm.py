"""The litellm wrapper, through litellm's real HTTP code path against a scripted server."""

from __future__ import annotations

import asyncio

import pytest

from codeact_kernel.errors import ModelError
from codeact_kernel.models.llm import LLM

from ..scripted_llm import ScriptedLLMServer


def test_replies_flow_through_litellm_with_usage_and_cost() -> None:
    with ScriptedLLMServer(["one", "two"]) as server:
        # A priced model name: litellm reads the price from its own table.
        llm = LLM(model="openai/gpt-4o-mini", api_base=server.api_base, max_retries=0)
        llm.validate()
        first = asyncio.run(llm.complete([{"role": "user", "content": "hi"}]))
        tokens: list[str] = []
        second = asyncio.run(llm.complete([{"role": "user", "content": "hi"}], tokens.append))
        with pytest.raises(ModelError, match="ran out of replies"):
            asyncio.run(llm.complete([{"role": "user", "content": "hi"}]))
    assert first.text == "one" and first.model == "openai/gpt-4o-mini"
    assert first.prompt_tokens > 0 and first.completion_tokens > 0
    assert first.cost is not None and first.cost > 0
    assert second.text == "two" and "".join(tokens) == "two"
    assert server.requests[0]["model"] == "gpt-4o-mini"


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="provider/model"):
        LLM(model="definitely-not-a-model").validate()


def test_missing_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEACT_NO_SUCH_KEY", raising=False)
    with pytest.raises(ModelError, match="CODEACT_NO_SUCH_KEY"):
        LLM(model="openai/gpt-4o-mini", api_key_env="CODEACT_NO_SUCH_KEY").validate()


def test_unreachable_endpoint_fails_after_retries() -> None:
    llm = LLM(model="openai/x", api_base="http://127.0.0.1:9/v1", max_retries=1,
              retry_backoff=0.01, request_timeout=5)
    llm.validate()
    with pytest.raises(ModelError, match="after 2 attempts"):
        asyncio.run(llm.complete([{"role": "user", "content": "hi"}]))


@pytest.mark.parametrize("opening", ["```python", "```"])
def test_stop_after_first_block_ends_the_reply_at_its_closing_fence(opening: str) -> None:
    # A bare opening fence must not end the reply: a `\n```\n` stop string did just that.
    reply = (f"I add them.\n{opening}\nx = 1 + 2\nprint(x)\n```\nOutput: 3\n"
             "```python\ndef get_population(city):\n    return 1\n```\n")
    with ScriptedLLMServer([reply, reply]) as server:
        llm = LLM(model="openai/scripted", api_base=server.api_base,
                  stop_after_first_block=True)
        llm.validate()
        tokens: list[str] = []
        streamed = asyncio.run(llm.complete([{"role": "user", "content": "hi"}], tokens.append))
        quiet = asyncio.run(llm.complete([{"role": "user", "content": "hi"}]))
    expected = f"I add them.\n{opening}\nx = 1 + 2\nprint(x)\n```"
    assert streamed.text == expected and "".join(tokens) == expected
    assert quiet.text == expected  # it streams even with no token callback
    assert streamed.completion_tokens > 0


def test_replies_keep_all_their_blocks_by_default() -> None:
    reply = "```python\na = 1\n```\nthen\n```python\nb = 2\n```"
    with ScriptedLLMServer([reply]) as server:
        llm = LLM(model="openai/scripted", api_base=server.api_base)
        llm.validate()
        tokens: list[str] = []
        done = asyncio.run(llm.complete([{"role": "user", "content": "hi"}], tokens.append))
    assert done.text == reply == "".join(tokens)
