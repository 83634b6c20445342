"""Model providers: model names that litellm alone cannot reach, resolved to an endpoint.

``LLM.providers`` maps a model name to a provider class (``"local"`` to the embedded
model's :class:`~codeact_kernel.models.local.LocalModelProvider`). The LLM opens its
provider when the agent starts and closes it when the agent closes. The provider answers
with an :class:`Endpoint`, where the requests go and the defaults they carry, and never
touches the user's settings: ``LLM.model`` still says ``"local"``, so a sub-agent
configured like its parent resolves the same name the same way.

A new provider (a model server started on demand, a proxy found through a service
registry) is one subclass and one ``LLM.providers`` entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from traitlets.config import Configurable

from ..errors import ModelError


@dataclass(frozen=True)
class Endpoint:
    """Where one model's requests go, and what each request carries by default."""

    model: str
    """The litellm model string sent with each request (e.g. ``openai/qwen2.5-coder-1.5b``)."""
    api_base: str = ""
    api_key: str | None = None
    """A key the endpoint needs; a key named by ``LLM.api_key_env`` wins over it."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Request defaults (e.g. ``stop``); ``LLM.extra_params`` wins over them."""
    stop_after_first_block: bool = False
    """End replies at their first code block even when ``LLM.stop_after_first_block`` is off."""
    tool_call_format: str = ""
    """How the server returns function calls when it does not parse them itself: "hermes"
    (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in the text, as Qwen and
    Hermes chat templates ask for) is parsed by the LLM; "" means native ``tool_calls``."""


class ModelProvider(Configurable):
    """Starts or finds the endpoint behind a model name; built with the LLM as its parent,
    so configuration reaches it (and the objects it creates) the usual traitlets way."""

    async def aopen(self) -> Endpoint:
        """Make the endpoint available (start a server, ...) and say where it is."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what ``aopen`` took. Called once per successful ``aopen``."""


def load_provider(path: str, model: str, parent: Configurable) -> ModelProvider:
    """The provider class named by ``path`` ('module:Class'), built under ``parent``."""
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(
            f"LLM.providers[{model!r}] = {path!r} cannot be loaded ({exc}); give an importable "
            "'package.module:Class' that subclasses ModelProvider"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, ModelProvider)):
        raise ModelError(f"LLM.providers[{model!r}] = {path!r} is not a ModelProvider subclass")
    return cls(parent=parent)
