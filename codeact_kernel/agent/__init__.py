"""The CodeAct loop: the model writes code, the kernel runs it, the observation goes back.

``loop`` holds :class:`Agent` and ``settings`` every option it has; ``prompt`` talks to
the model, ``observation`` turns a kernel's result into what the model sees, ``workspace``
is what the agent itself runs in its kernel, ``handoff`` sends values into it, ``managed``
runs sub-agents as tools, ``results`` is the run as data, and ``replay`` re-runs a
run's trace without the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loop import Agent

__all__ = ["Agent"]


def __getattr__(name: str) -> Any:
    # Lazy: ``replay`` and the other modules import without the loop and what it brings.
    if name == "Agent":
        from .loop import Agent

        return Agent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
