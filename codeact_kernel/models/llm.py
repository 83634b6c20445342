"""The LLM, reached through litellm: any provider, retries, usage and cost.

A model name listed in ``LLM.providers`` (``"local"``) is resolved by its provider to an
:class:`~codeact_kernel.models.provider.Endpoint` when the agent starts; every other name
goes to litellm as it is. Tests point the LLM at a scripted OpenAI-compatible server
(``tests/scripted_llm.py``), so litellm's real HTTP, streaming and usage code runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import Configurable

from ..errors import ModelError
from .blocks import first_block_end
from .provider import Endpoint, ModelProvider, load_provider

# Without this, litellm spends seconds at import retrying a download it cannot make offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TokenCallback = Callable[[str], Any]
Message = dict[str, Any]


@dataclass
class Completion:
    """One model reply with its accounting."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    duration: float = 0.0
    model: str = ""
    # Native function calls: {"id", "name", "arguments"} with the arguments as the raw
    # JSON text the model wrote (parsed, and checked, by the agent).
    tool_calls: list[dict[str, str]] = field(default_factory=list)


class LLM(Configurable):
    """A chat model called through litellm."""

    model = Unicode(
        "local",
        help="litellm model string, e.g. 'openai/gpt-4o-mini', 'anthropic/claude-3-5-sonnet', "
        "'ollama/qwen2.5-coder'. 'local' runs the embedded local coder model.",
    ).tag(config=True)
    api_base = Unicode("", help="Base URL of an OpenAI-compatible or provider endpoint.").tag(
        config=True
    )
    api_key_env = Unicode(
        "",
        help="Name of the host environment variable holding the API key. The key is read "
        "on the host and never enters the sandbox.",
    ).tag(config=True)
    temperature = Float(0.0, help="Sampling temperature.").tag(config=True)
    max_tokens = Int(1500, help="Maximum tokens in one reply.").tag(config=True)
    request_timeout = Float(180.0, help="Seconds one LLM request may take.").tag(config=True)
    max_retries = Int(
        3, help="Retries, with exponential backoff, on rate limits, timeouts and 5xx errors."
    ).tag(config=True)
    retry_backoff = Float(1.0, help="First backoff delay in seconds; doubles each retry.").tag(
        config=True
    )
    stop_after_first_block = Bool(
        False,
        help="End each reply at the closing fence of its first code block, by closing the "
        "stream there (the server then stops generating). Small models otherwise go on to "
        "imagine the output and write more code. On for the embedded local model (see "
        "LocalModelServer.stop_after_first_block); off by default, since a reply may hold "
        "several blocks.",
    ).tag(config=True)
    extra_params = Dict(
        help="Extra keyword arguments passed to litellm.acompletion as they are."
    ).tag(config=True)
    function_calling = Enum(
        ["auto", "yes", "no"], "auto",
        help="Whether the model takes native function calls (Agent.action_format 'json' "
        "and 'auto' need them): 'auto' asks litellm (litellm.supports_function_calling); "
        "'yes' for a self-hosted OpenAI-compatible server that litellm does not know but "
        "that takes `tools` (vLLM, llama.cpp with a tool-call template, Ollama).",
    ).tag(config=True)
    providers = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        default_value={"local": "codeact_kernel.models.local:LocalModelProvider"},
        help="Model names served by a provider rather than by litellm alone: name -> "
        "'package.module:Class' of a ModelProvider, which starts or finds the endpoint when "
        "the agent starts (the local model's server) and stops it when the agent closes.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key: str | None = None
        self._endpoint: Endpoint | None = None
        self._provider: ModelProvider | None = None

    @property
    def endpoint(self) -> Endpoint:
        """Where requests go: the provider's answer, else the model string as it is."""
        return self._endpoint or Endpoint(self.model, self.api_base)

    @property
    def label(self) -> str:
        """The model as the user named it, and what it resolved to when that differs."""
        served = self.endpoint.model
        return self.model if served == self.model else f"{self.model} ({served})"

    async def astart(self) -> LLM:
        """Open the model's provider if its name has one, then check the settings."""
        if self._endpoint is None and self.model in self.providers:
            provider = load_provider(self.providers[self.model], self.model, self)
            self._endpoint = await provider.aopen()
            self._provider = provider
        try:
            self.validate()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """Close the provider opened by ``astart`` (the local model's server). Idempotent."""
        provider, self._provider = self._provider, None
        if provider is not None:
            self._endpoint = None
            await provider.aclose()

    def attach(self, endpoint: Endpoint) -> None:
        """Send requests to an endpoint that someone else keeps running."""
        self._endpoint = endpoint

    def validate(self) -> None:
        """Fail before any code runs when the model string or its key cannot work."""
        import litellm

        litellm.suppress_debug_info = True
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ModelError(
                    f"the environment variable {self.api_key_env} (given as the API key "
                    "variable) is not set; export it on the host, e.g. "
                    f"`export {self.api_key_env}=...`"
                )
            self.api_key = key
        endpoint = self.endpoint
        if self.model in self.providers and self._endpoint is None:
            raise ModelError(f"the model {self.model!r} is served by a provider that is not "
                             "open yet: start the LLM (await llm.astart()) before using it")
        try:
            litellm.get_llm_provider(endpoint.model, api_base=endpoint.api_base or None)
        except Exception as exc:  # litellm raises its own BadRequestError here
            raise ModelError(
                f"unknown model {self.model!r}: litellm cannot tell its provider. Use a "
                "'provider/model' string such as 'openai/gpt-4o-mini' (see "
                "https://docs.litellm.ai/docs/providers), or one of "
                f"{', '.join(map(repr, sorted(self.providers)))}."
            ) from exc
        if self.api_key is None and endpoint.api_key:
            self.api_key = endpoint.api_key
        if self.api_key is None and endpoint.api_base:
            # Self-hosted OpenAI-compatible servers (llama.cpp, vLLM, Ollama) need no
            # key, but the OpenAI client refuses to send a request without one.
            self.api_key = "not-needed"
        if self.api_key is None:
            missing = litellm.validate_environment(endpoint.model).get("missing_keys") or []
            if missing:
                raise ModelError(
                    f"the model {self.model!r} needs {', '.join(missing)} in the host "
                    "environment: export it, or name another variable with --api-key-env"
                )

    def supports_function_calling(self) -> bool:
        """Whether requests may carry ``tools`` (see ``function_calling``)."""
        if self.function_calling != "auto":
            return self.function_calling == "yes"
        import litellm

        endpoint = self.endpoint
        if endpoint.tool_call_format:
            return True  # the provider knows its server's template writes calls as text
        try:
            return bool(litellm.supports_function_calling(endpoint.model))
        except Exception:  # a model litellm has never heard of
            return False

    def takes_param(self, name: str) -> bool:
        """Whether the provider takes the OpenAI request parameter ``name`` (``seed``, say):
        litellm refuses a request carrying one it does not; a model it does not know is
        taken to be OpenAI-compatible."""
        import litellm

        try:
            known = litellm.get_supported_openai_params(model=self.endpoint.model)
        except Exception:  # a model litellm has never heard of
            return True
        return known is None or name in known

    async def complete(
        self, messages: list[Message], on_token: TokenCallback | None = None,
        tools: list[dict[str, Any]] | None = None, overrides: dict[str, Any] | None = None,
    ) -> Completion:
        """Ask the model, retrying transient failures; errors become ModelError.

        ``tools``: function specs the model may call (native function calling).
        ``overrides``: request parameters for this request only (``temperature``, ``seed``),
        over the settings and the endpoint's defaults."""
        from litellm import exceptions as errors

        delay = self.retry_backoff
        for attempt in range(self.max_retries + 1):
            try:
                return await self._complete_once(messages, on_token, tools, overrides)
            except (
                errors.RateLimitError,
                errors.Timeout,
                errors.APIConnectionError,
                errors.InternalServerError,
                errors.ServiceUnavailableError,
            ) as exc:
                if attempt == self.max_retries:
                    raise ModelError(
                        f"the model {self.model!r} failed after {attempt + 1} attempts: "
                        f"{_short(exc)}. Check that the endpoint is up"
                        + (f" at {self.endpoint.api_base}" if self.endpoint.api_base else "")
                        + ", or raise LLM.max_retries / LLM.request_timeout."
                    ) from exc
                await asyncio.sleep(delay)
                delay *= 2
            except errors.AuthenticationError as exc:
                raise ModelError(
                    f"the provider rejected the API key for {self.model!r}: {_short(exc)}. "
                    "Set a valid key in the variable named by --api-key-env."
                ) from exc
            except (errors.NotFoundError, errors.BadRequestError) as exc:
                raise ModelError(
                    f"the provider refused the request for {self.model!r}: {_short(exc)}. "
                    "Check the model name and --api-base."
                ) from exc
        raise AssertionError("unreachable")

    async def _complete_once(
        self, messages: list[Message], on_token: TokenCallback | None,
        tools: list[dict[str, Any]] | None = None, overrides: dict[str, Any] | None = None,
    ) -> Completion:
        import litellm

        endpoint = self.endpoint
        kwargs: dict[str, Any] = {
            "model": endpoint.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.request_timeout,
            **endpoint.params,
            **self.extra_params,
            **(overrides or {}),
        }
        if tools:
            kwargs["tools"] = tools
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        cut = self.stop_after_first_block or endpoint.stop_after_first_block
        # A model that writes its calls as text is cut after its first call too (it would
        # otherwise go on to imagine the result); one call per reply, as one block.
        ends = _first_action_end if tools and endpoint.tool_call_format else first_block_end
        started = time.monotonic()
        if on_token is None and not cut:
            response = await litellm.acompletion(**kwargs)
        else:
            response = await self._stream(kwargs, on_token, ends if cut else None)
        completion = _to_completion(response, time.monotonic() - started, endpoint.model)
        if tools and not completion.tool_calls and endpoint.tool_call_format == "hermes":
            completion.text, completion.tool_calls = hermes_tool_calls(completion.text)
        return completion

    async def _stream(self, kwargs: dict[str, Any], on_token: TokenCallback | None,
                      first_end: Callable[[str], int | None] | None) -> Any:
        import litellm

        chunks, text, cut = [], "", False
        stream = await litellm.acompletion(stream=True, **kwargs)
        try:
            async for chunk in stream:
                chunks.append(chunk)
                piece = chunk.choices[0].delta.content if chunk.choices else None
                if not piece:
                    continue
                text += piece
                end = first_end(text) if first_end is not None else None
                if end is not None:
                    piece, text, cut = piece[: len(piece) - (len(text) - end)], text[:end], True
                if piece and on_token is not None:
                    on_token(piece)
                if cut:
                    break
        finally:
            # Closing the connection is what makes the server stop generating.
            await stream.aclose()
        response: Any = litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])
        if cut:
            response.choices[0].message.content = text
        return response


def _to_completion(response: Any, duration: float, model: str) -> Completion:
    import litellm

    message = response.choices[0].message
    text = message.content or ""
    usage = getattr(response, "usage", None)
    cost: float | None
    try:
        cost = float(litellm.completion_cost(completion_response=response))
    except Exception:  # unknown models have no price; that is not an error
        cost = None
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost=cost,
        duration=duration,
        model=model,
        tool_calls=_tool_calls(message),
    )


_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_HERMES_NAME = re.compile(r'"name"\s*:\s*"([^"]{1,100})"')


def hermes_tool_calls(text: str) -> tuple[str, list[dict[str, str]]]:
    """Function calls written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
    text (Qwen's and Hermes' chat templates): the text without them, and the calls. A call
    whose JSON does not parse keeps its raw text as arguments, so the agent's check tells
    the model what was wrong."""
    calls: list[dict[str, str]] = []
    for index, match in enumerate(_HERMES_CALL.finditer(text)):
        body = match.group(1)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            arguments = data.get("arguments", {})
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append({"id": f"call_{index}", "name": data["name"], "arguments": raw})
        else:
            name = _HERMES_NAME.search(body)
            calls.append({"id": f"call_{index}", "name": name.group(1) if name else "",
                          "arguments": body})
    if not calls and "```" not in text:
        return _bare_calls(text)
    return _HERMES_CALL.sub("", text).strip(), calls


def _first_action_end(text: str) -> int | None:
    """Where the first complete action of ``text`` ends: a code block, a <tool_call>
    element, or a bare call object; None while there is none."""
    ends = [first_block_end(text)]
    closed = text.find("</tool_call>")
    ends.append(closed + len("</tool_call>") if closed >= 0 else None)
    if "<tool_call>" not in text and "```" not in text:
        ends.append(_bare_end(text))
    found = [e for e in ends if e is not None]
    return min(found) if found else None


def _bare_end(text: str) -> int | None:
    for match in _BARE_START.finditer(text):
        try:
            _, used = json.JSONDecoder().raw_decode("{" + text[match.end():])
        except ValueError:
            continue
        end = match.end() + used - 1
        extra = len(match.group(1)) - 1
        while extra and text[end:end + 1] == "}":
            end, extra = end + 1, extra - 1
        return end
    return None


_BARE_START = re.compile(r'(\{+)\s*(?="name"\s*:)')


def _bare_calls(text: str) -> tuple[str, list[dict[str, str]]]:
    """Calls written as bare ``{"name": ..., "arguments": {...}}`` objects, without the tags
    (the embedded 1.5B model does this, even in the doubled braces its template shows)."""
    decoder = json.JSONDecoder()
    calls: list[dict[str, str]] = []
    kept, at = [], 0
    for match in _BARE_START.finditer(text):
        if match.start() < at:
            continue
        try:
            data, used = decoder.raw_decode("{" + text[match.end():])
        except ValueError:
            continue
        if not (isinstance(data, dict) and isinstance(data.get("name"), str)
                and "arguments" in data):
            continue
        end = match.end() + used - 1
        extra = len(match.group(1)) - 1  # the doubled braces around it
        while extra and text[end:end + 1] == "}":
            end, extra = end + 1, extra - 1
        arguments = data["arguments"]
        calls.append({"id": f"call_{len(calls)}", "name": data["name"],
                      "arguments": arguments if isinstance(arguments, str)
                      else json.dumps(arguments)})
        kept.append(text[at:match.start()])
        at = end
    kept.append(text[at:])
    return "".join(kept).strip(), calls


def _tool_calls(message: Any) -> list[dict[str, str]]:
    """The function calls of a reply, as plain data; the arguments stay raw text."""
    calls: list[dict[str, str]] = []
    for index, call in enumerate(getattr(message, "tool_calls", None) or []):
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        arguments = getattr(function, "arguments", None)
        calls.append({
            "id": str(getattr(call, "id", None) or f"call_{index}"),
            "name": name if isinstance(name, str) else "",
            "arguments": arguments if isinstance(arguments, str) else (
                json.dumps(arguments) if isinstance(arguments, dict) else ""),
        })
    return calls


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
