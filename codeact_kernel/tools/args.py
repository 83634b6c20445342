"""Checking untrusted JSON arguments against a tool's annotations.

Arguments come from the sandbox, so they are checked, never trusted. Nothing is
coerced silently except int -> float; JSON has no tuples or sets, so a list is
accepted (and converted) where a tuple or set is annotated.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

_SEQUENCES = (list, collections.abc.Sequence, collections.abc.MutableSequence,
              collections.abc.Iterable, collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


class ArgumentMismatch(Exception):
    """One argument does not fit its annotation (the message says how)."""


def annotation_text(annotation: Any) -> str:
    """How an annotation reads in Python source (strings are kept as written)."""
    if isinstance(annotation, str):
        return annotation
    if annotation is type(None):
        return "None"
    # `Any` reads better to a model than `typing.Any`, and costs fewer tokens.
    return re.sub(r"\btyping\.", "", inspect.formatannotation(annotation))


def check_value(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` (or its int->float / list->tuple form) if it fits ``annotation``."""
    ok, result = _check(value, annotation, where, coerce=True)
    if not ok:
        raise ArgumentMismatch(
            f"{where} must be {annotation_text(annotation)}, got {_describe(value)}"
        )
    return result


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _check(value: Any, ann: Any, where: str, coerce: bool) -> tuple[bool, Any]:
    if ann is Any or ann is object or ann is inspect.Parameter.empty or isinstance(ann, str):
        return True, value  # unresolved string annotations cannot be checked
    if ann is None or ann is type(None):
        return value is None, value
    origin = get_origin(ann)
    if origin is Union or origin is types.UnionType:
        return _check_union(value, get_args(ann), where, coerce)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in get_args(ann)), value
    if ann is float:
        if type(value) is float:
            return True, value
        return (coerce and type(value) is int), (float(value) if type(value) is int else value)
    if ann is int:
        return type(value) is int, value
    if ann is bool:
        return type(value) is bool, value
    if ann is str:
        return isinstance(value, str), value
    return _check_container(value, ann, origin, where, coerce)


def _check_union(
    value: Any, members: tuple[Any, ...], where: str, coerce: bool
) -> tuple[bool, Any]:
    # An exact match wins before any coercion: 3 stays an int in `int | float`.
    for allow in (False, True) if coerce else (False,):
        for member in members:
            try:
                ok, result = _check(value, member, where, allow)
            except ArgumentMismatch:  # a nested item failed: try the next member
                continue
            if ok:
                return True, result
    return False, value


def _check_container(
    value: Any, ann: Any, origin: Any, where: str, coerce: bool
) -> tuple[bool, Any]:
    base = origin or ann
    args = get_args(ann)
    if base in _SEQUENCES:
        if not isinstance(value, list):
            return False, value
        return True, _items(value, args[0] if args else Any, where)
    if base is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        if len(args) == 2 and args[1] is Ellipsis:
            return True, tuple(_items(list(value), args[0], where))
        if args and len(args) != len(value):
            raise ArgumentMismatch(f"{where} must have {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(value, args, strict=False))
        items = [check_value(v, a, f"{where}[{i}]") for i, (v, a) in pairs]
        return True, tuple(items) if args else tuple(value)
    if base in (set, frozenset, collections.abc.Set):
        if not isinstance(value, (list, set, frozenset)):
            return False, value
        items = _items(list(value), args[0] if args else Any, where)
        try:
            return True, (frozenset if base is frozenset else set)(items)
        except TypeError:
            raise ArgumentMismatch(f"{where} items must be hashable") from None
    if base in _MAPPINGS or typing.is_typeddict(ann):
        if not isinstance(value, dict):
            return False, value
        if len(args) == 2:
            return True, {
                check_value(k, args[0], f"{where} key"): check_value(v, args[1], f"{where}[{k!r}]")
                for k, v in value.items()
            }
        return True, value
    return _check_class(value, ann)


def _items(values: list[Any], ann: Any, where: str) -> list[Any]:
    return [check_value(v, ann, f"{where}[{i}]") for i, v in enumerate(values)]


def _check_class(value: Any, ann: Any) -> tuple[bool, Any]:
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        try:
            return True, ann(value)
        except ValueError:
            return False, value
    try:
        return isinstance(value, ann), value
    except TypeError:  # a generic alias or protocol isinstance cannot judge
        return True, value
