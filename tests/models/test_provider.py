"""Model providers: a model name resolved to an endpoint without touching the user's settings.

The provider here is a test double of the seam (the local model's is in test_local.py): it
"starts" a scripted OpenAI-compatible server's endpoint, so every request still goes
through litellm's real HTTP path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest
from traitlets import Unicode
from traitlets.config import Config

from codeact_kernel import Agent
from codeact_kernel.errors import ModelError
from codeact_kernel.models.llm import LLM
from codeact_kernel.models.provider import Endpoint, ModelProvider

from ..helpers import fence
from ..scripted_llm import ScriptedLLMServer

HOUSE = {"house": f"{__name__}:HouseProvider"}


class HouseProvider(ModelProvider):
    """Serves the model name "house" from a scripted server, with request defaults."""

    api_base = Unicode("", help="The scripted server's endpoint.").tag(config=True)
    log: ClassVar[list[tuple[str, Any]]] = []

    async def aopen(self) -> Endpoint:
        HouseProvider.log.append(("open", self.parent.model))
        return Endpoint(model="openai/scripted", api_base=self.api_base, api_key="house-key",
                        params={"stop": ["\nEND"], "seed": 1}, stop_after_first_block=True)

    async def aclose(self) -> None:
        HouseProvider.log.append(("close", self.parent.model))


def house_config(server: ScriptedLLMServer) -> Config:
    config = Config()
    config.LLM.providers = HOUSE
    config.LLM.model = "house"
    config.HouseProvider.api_base = server.api_base
    return config


@pytest.fixture(autouse=True)
def fresh_log() -> None:
    HouseProvider.log.clear()


def test_the_name_resolves_through_its_provider_and_the_settings_stay() -> None:
    reply = "Here.\n```python\nx = 1\n```\nOutput: 1\n```python\nimagined()\n```"
    with ScriptedLLMServer([reply]) as server:
        llm = LLM(config=house_config(server), extra_params={"seed": 7}, max_retries=0)
        asyncio.run(llm.astart())
        settings = {name: getattr(llm, name) for name in llm.trait_names(config=True)}
        done = asyncio.run(llm.complete([{"role": "user", "content": "hi"}]))
        asyncio.run(llm.aclose())
        asyncio.run(llm.aclose())  # idempotent
    assert settings["model"] == "house" and settings["api_base"] == ""
    assert settings["extra_params"] == {"seed": 7} and not settings["stop_after_first_block"]
    sent = server.requests[0]
    assert sent["model"] == "scripted" and sent["stop"] == ["\nEND"]
    assert sent["seed"] == 7  # the user's extra_params win over the provider's defaults
    assert done.text == "Here.\n```python\nx = 1\n```"  # the provider's first-block cut
    assert done.model == "openai/scripted" and llm.label == "house"
    assert HouseProvider.log == [("open", "house"), ("close", "house")]


def test_label_names_what_the_model_resolved_to() -> None:
    with ScriptedLLMServer() as server:
        llm = LLM(config=house_config(server))
        asyncio.run(llm.astart())
        try:
            assert llm.label == "house (openai/scripted)"
        finally:
            asyncio.run(llm.aclose())


def test_a_provider_that_cannot_be_loaded_names_the_setting() -> None:
    llm = LLM(model="mine", providers={"mine": "no_such_module_xyz:Provider"})
    with pytest.raises(ModelError, match=r"LLM.providers\['mine'\].*importable"):
        asyncio.run(llm.astart())
    llm = LLM(model="mine", providers={"mine": "codeact_kernel.models.llm:LLM"})
    with pytest.raises(ModelError, match="not a ModelProvider subclass"):
        asyncio.run(llm.astart())


def test_a_provider_name_needs_the_provider_open() -> None:
    with pytest.raises(ModelError, match=r"await llm\.astart"):
        LLM(model="local").validate()


def test_sub_agents_resolve_the_users_name_themselves(tmp_path: Path,
                                                      runtime_dir: Path) -> None:
    with ScriptedLLMServer() as server:
        config = house_config(server)
        helper = Agent(name="helper", description="Adds one to a number.", config=config)
        helper.session.runtime_dir = str(runtime_dir)
        boss = Agent(managed_agents=[helper], config=config,
                     trace_path=str(tmp_path / "boss.ipynb"))
        boss.session.runtime_dir = str(runtime_dir)
        server.enqueue(fence("final_answer(helper('add one', n=41))"),
                       fence("final_answer(n + 1)"))
        result = boss.run("Ask the helper.")
    assert result.status == "answered" and result.answer == 42, [s.outputs for s in result.steps]
    # The child was configured with what the user wrote ("house"), not with the endpoint
    # the parent's provider resolved it to, and opened and closed its own provider.
    assert HouseProvider.log == [("open", "house"), ("open", "house"), ("close", "house"),
                                 ("close", "house")]
    assert helper.llm.model == "house" and boss.llm.model == "house"
    assert boss.llm.api_base == "" and boss.llm.extra_params == {}
