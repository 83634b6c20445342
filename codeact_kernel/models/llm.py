"""The LLM, reached through litellm: any provider, retries, usage and cost.

The one test seam is ``scripted_replies``: replies fed through litellm's own
``mock_response`` path, so tests exercise the real call, streaming, usage
and cost code (the simonw/llm ``MockModel.enqueue`` pattern).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from traitlets import Bool, Dict, Float, Int, List, Unicode
from traitlets.config import Configurable

from ..agent.prompt import first_block_end
from ..errors import ModelError

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
    scripted_replies = List(
        Unicode(),
        help="Testing: replies served in order through litellm's mock_response instead of "
        "calling a provider. Empty means call the real model.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._script_pos = 0
        self.api_key: str | None = None

    @property
    def label(self) -> str:
        return self.model

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
        if self.scripted_replies:
            return
        try:
            litellm.get_llm_provider(self.model, api_base=self.api_base or None)
        except Exception as exc:  # litellm raises its own BadRequestError here
            raise ModelError(
                f"unknown model {self.model!r}: litellm cannot tell its provider. Use a "
                "'provider/model' string such as 'openai/gpt-4o-mini' (see "
                "https://docs.litellm.ai/docs/providers), or 'local'."
            ) from exc
        if self.api_key is None and self.api_base:
            # Self-hosted OpenAI-compatible servers (llama.cpp, vLLM, Ollama) need no
            # key, but the OpenAI client refuses to send a request without one.
            self.api_key = "not-needed"
        if self.api_key is None:
            missing = litellm.validate_environment(self.model).get("missing_keys") or []
            if missing:
                raise ModelError(
                    f"the model {self.model!r} needs {', '.join(missing)} in the host "
                    "environment: export it, or name another variable with --api-key-env"
                )

    async def complete(
        self, messages: list[Message], on_token: TokenCallback | None = None
    ) -> Completion:
        """Ask the model, retrying transient failures; errors become ModelError."""
        from litellm import exceptions as errors

        delay = self.retry_backoff
        for attempt in range(self.max_retries + 1):
            try:
                return await self._complete_once(messages, on_token)
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
                        + (f" at {self.api_base}" if self.api_base else "")
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
        self, messages: list[Message], on_token: TokenCallback | None
    ) -> Completion:
        import litellm

        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.request_timeout,
            **self.extra_params,
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.scripted_replies:
            kwargs["mock_response"] = self._next_scripted()
        started = time.monotonic()
        if on_token is None and not self.stop_after_first_block:
            response = await litellm.acompletion(**kwargs)
        else:
            response = await self._stream(kwargs, on_token)
        return _to_completion(response, time.monotonic() - started, self.model)

    async def _stream(self, kwargs: dict[str, Any], on_token: TokenCallback | None) -> Any:
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
                end = first_block_end(text) if self.stop_after_first_block else None
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

    def _next_scripted(self) -> str:
        if self._script_pos >= len(self.scripted_replies):
            raise ModelError(
                f"the scripted model ran out of replies after {self._script_pos}; "
                "add more to LLM.scripted_replies"
            )
        reply = self.scripted_replies[self._script_pos]
        self._script_pos += 1
        return str(reply)


def _to_completion(response: Any, duration: float, model: str) -> Completion:
    import litellm

    text = response.choices[0].message.content or ""
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
    )


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
