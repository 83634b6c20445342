"""What every domain of the unseen task set shares: the task record, checkers and paging.

A checker is a small object, not a closure, so that ``describe()`` can say exactly what it
accepts: the split's hash covers that text, and reports print it as the expected answer.
Checkers are lenient about form (``"625.0 g"``, ``[625]``, ``{"total": 625}``) and strict
about content, so that degenerate answers (``None``, ``0``, ``[]``, ``""``, every candidate
at once) fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DIFFICULTIES = ("easy", "medium", "hard")
# What a task exercises; a task has one or more of these, its main one first.
KINDS = (
    "lookup",       # one fact from one tool, perhaps lightly transformed
    "compute",      # the answer is computed, it is in no tool result verbatim
    "conditional",  # a filter or a comparison decides what counts
    "chain",        # three or more tools, each fed by the one before
    "pagination",   # a tool returns pages with a next_page token
    "tool-advice",  # the obvious first call fails with an error that says what to do
    "list-vs-lookup",  # both a listing tool and a lookup tool exist; the lookup is needed
)


class Check:
    """Base of the checkers: ``check(answer) -> bool`` and a description of what passes."""

    def __call__(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def as_number(value: Any) -> float | None:
    """A number from the usual forms of one: 3, "3.0", "3 kg", [3], {"x": 3}, numpy scalars."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        found = _NUMBER_RE.findall(value)
        if len(found) != 1:  # "between 3 and 4" is not an answer
            return None
        return float(found[0].replace(",", ""))
    if isinstance(value, dict) and len(value) == 1:
        return as_number(next(iter(value.values())))
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return as_number(value[0])
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Number(Check):
    """A number within ``tol`` (absolute) of ``expected``."""

    expected: float
    tol: float = 0.01

    def __call__(self, value: Any) -> bool:
        got = as_number(value)
        return got is not None and math.isclose(got, self.expected, abs_tol=self.tol)

    def describe(self) -> str:
        return f"Number({self.expected!r}, tol={self.tol!r})"


def _one_string(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Text(Check):
    """A string holding ``expected`` (case-insensitive) and none of ``others``: naming every
    candidate at once is not an answer."""

    expected: str
    others: tuple[str, ...] = ()

    def __call__(self, value: Any) -> bool:
        text = _one_string(value)
        if text is None:
            return False
        low = text.lower()
        return self.expected.lower() in low and not any(o.lower() in low for o in self.others)

    def describe(self) -> str:
        # Sorted: ``others`` is often built from a set, whose order varies between runs.
        return f"Text({self.expected!r}, others={tuple(sorted(self.others))!r})"


@dataclass(frozen=True)
class Names(Check):
    """Exactly these names, in any order: a list/tuple/set of strings or one comma-separated
    string; case and surrounding spaces are ignored."""

    expected: tuple[str, ...]

    def __call__(self, value: Any) -> bool:
        if isinstance(value, str):
            items: Iterable[Any] = value.split(",")
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = value
        else:
            return False
        got = [str(v).strip().lower() for v in items]
        return sorted(got) == sorted(e.lower() for e in self.expected)

    def describe(self) -> str:
        return f"Names({sorted(self.expected)!r})"


@dataclass(frozen=True)
class ClockTime(Check):
    """A time of day "HH:MM" (a leading zero may be missing), alone or in a sentence."""

    expected: str

    def __call__(self, value: Any) -> bool:
        text = _one_string(value)
        if text is None:
            return False
        found = re.findall(r"\b(\d{1,2}):(\d{2})\b", text)
        hours, minutes = (int(p) for p in self.expected.split(":"))
        return len(found) == 1 and (int(found[0][0]), int(found[0][1])) == (hours, minutes)

    def describe(self) -> str:
        return f"ClockTime({self.expected!r})"


@dataclass(frozen=True)
class UnseenTask:
    """One task: what the model is asked, the tools it is given, which of them it must call
    (a pass needs the right answer *and* a successful call of each), and how it is checked.

    ``solution`` is code that solves the task with the tools, as a model could write it; the
    tests run it through the real kernel and the checker, so every task is known solvable.
    """

    name: str
    domain: str
    difficulty: str
    kinds: tuple[str, ...]
    prompt: str
    tools: tuple[Callable[..., Any], ...]
    required: tuple[Callable[..., Any], ...]
    check: Check
    solution: str
    expected: str = field(default="")

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"{self.name}: difficulty must be one of {DIFFICULTIES}")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"{self.name}: kinds must be some of {KINDS}, not {unknown}")
        if not set(self.required) <= set(self.tools):
            raise ValueError(f"{self.name}: every required tool must also be offered")
        if not self.expected:
            object.__setattr__(self, "expected", self.check.describe())


def paginate(items: Sequence[dict[str, Any]], page_token: str, size: int, key: str,
             field_name: str) -> dict[str, Any]:
    """One page of ``items``: ``{field_name: [...], "next_page": token or None}``.

    Tokens are "<key>-p<N>"; a wrong one gets an error that says which token to pass.
    """
    page = 1
    if page_token:
        match = re.fullmatch(re.escape(key) + r"-p(\d+)", page_token.strip())
        if match is None or not 1 <= int(match.group(1)) <= max(1, math.ceil(len(items) / size)):
            raise ValueError(
                f"invalid page_token {page_token!r}: pass '' for the first page, then the "
                "'next_page' value of the page before"
            )
        page = int(match.group(1))
    chunk = [dict(item) for item in items[(page - 1) * size: page * size]]
    more = page * size < len(items)
    return {field_name: chunk, "next_page": f"{key}-p{page + 1}" if more else None}
