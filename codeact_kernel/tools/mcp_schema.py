"""From an MCP tool's JSON Schemas to a Python signature, a return type and a docstring,
and back (``to_schema``: a ``@tool``'s parameters as the JSON Schema of a function call).

The stub in the kernel gets a real signature (``inspect.signature``, ``help()``), and the
host checks the kernel's arguments against the same annotations (tools/args.py) before
the server sees them. Schemas come from the server, so everything here is defensive:
unknown or odd schemas become ``Any``, never an exception.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import inspect
import keyword
import operator
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .args import annotation_text

MAX_DEPTH = 8
MAX_ENUM = 50
_SIMPLE = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


@dataclass
class Param:
    """One parameter: its Python name, its name in the schema, and how it is passed."""

    name: str
    wire: str
    annotation: Any
    required: bool
    default: Any = None
    description: str = ""


@dataclass
class SchemaSignature:
    """What a tool's schemas say, in Python terms."""

    params: list[Param]
    returns: Any
    unwrap: str | None = None  # the SDK wraps a non-object result in {"result": ...}
    return_fields: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # python name -> schema name

    def signature(self) -> inspect.Signature:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        ordered = [p for p in self.params if p.required] + [
            p for p in self.params if not p.required]
        parameters = [
            inspect.Parameter(p.name, kind, annotation=p.annotation,
                              default=inspect.Parameter.empty if p.required else p.default)
            for p in ordered
        ]
        return inspect.Signature(parameters, return_annotation=self.returns)


def identifier(raw: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``raw`` as a Python identifier that is not a keyword and not in ``taken``."""
    name = re.sub(r"\W", "_", raw.strip()) or "_"
    if name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def read_schemas(input_schema: Any, output_schema: Any, tool_name: str) -> SchemaSignature:
    """The parameters from ``inputSchema`` and the return type from ``outputSchema``."""
    schema = input_schema if isinstance(input_schema, dict) else {}
    defs = _defs(schema)
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    required_names = {r for r in required if isinstance(r, str)} if isinstance(
        required, list) else set()
    params: list[Param] = []
    taken: set[str] = set()
    renamed: dict[str, str] = {}
    for wire, prop in list(properties.items())[:200]:
        wire = str(wire)
        name = identifier(wire, taken)
        taken.add(name)
        if name != wire:
            renamed[name] = wire
        prop = prop if isinstance(prop, dict) else {}
        annotation = to_annotation(prop, defs)
        is_required = wire in required_names
        default = prop.get("default") if _is_json(prop.get("default")) else None
        if not is_required and default is None and annotation is not Any:
            annotation = _optional(annotation)
        params.append(Param(name, wire, annotation, is_required, default,
                            _text(prop.get("description"))))
    returns, unwrap, fields = _returns(output_schema, tool_name)
    return SchemaSignature(params, returns, unwrap, fields, renamed)


def to_annotation(schema: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """A Python annotation for a JSON Schema (``Any`` where it cannot say more)."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return Any
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        return to_annotation(target, defs, depth + 1)
    if "const" in schema and _is_literal(schema["const"]):
        return Literal[schema["const"]]
    enum = schema.get("enum")
    if isinstance(enum, list) and 0 < len(enum) <= MAX_ENUM and all(map(_is_literal, enum)):
        return Literal[tuple(enum)]
    for key in ("anyOf", "oneOf"):
        members = schema.get(key)
        if isinstance(members, list) and members:
            return _union([to_annotation(m, defs, depth + 1) for m in members[:20]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([to_annotation({**schema, "type": k}, defs, depth + 1) for k in kind[:8]])
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "array":
        items = schema.get("items")
        item = to_annotation(items, defs, depth + 1) if isinstance(items, dict) else Any
        return types.GenericAlias(list, (item,))
    if kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties")
        value = to_annotation(extra, defs, depth + 1) if isinstance(extra, dict) else Any
        return types.GenericAlias(dict, (str, value))
    return Any


def docstring(description: str, params: list[Param], returns: Any,
              return_fields: list[str]) -> str:
    """A Google-style docstring: the description, ``Args:`` and ``Returns:``."""
    text = inspect.cleandoc(_text(description)) or "(the server gave no description)"
    lines = [text]
    if params and not re.search(r"^(Args|Arguments|Parameters):\s*$", text, re.MULTILINE):
        lines += ["", "Args:"]
        for p in params:
            parts = [p.description.strip()] if p.description.strip() else []
            if not p.required:
                parts.append(f"Default: {p.default!r}." if p.default is not None else "Optional.")
            lines.append(f"    {p.name}: {' '.join(parts) or '(no description)'}")
    if return_fields:
        lines += ["", "Returns:", f"    {annotation_text(returns)} with keys: "
                  + ", ".join(return_fields)]
    return "\n".join(lines)


def _returns(output_schema: Any, tool_name: str) -> tuple[Any, str | None, list[str]]:
    if not isinstance(output_schema, dict):
        return Any, None, []
    defs = _defs(output_schema)
    props = output_schema.get("properties")
    props = props if isinstance(props, dict) else {}
    # The python SDK wraps a result that is not an object as {"result": value}, under a
    # schema titled "<function>Output"; the kernel gets the value itself.
    title = output_schema.get("title")
    if (list(props) == ["result"] and output_schema.get("required") == ["result"]
            and isinstance(title, str) and title.endswith("Output")):
        return to_annotation(props["result"], defs), "result", []
    fields = []
    for key, prop in list(props.items())[:40]:
        kind = annotation_text(to_annotation(prop, defs))
        fields.append(f"{key} ({kind})")
    return to_annotation(output_schema, defs), None, fields


def _defs(schema: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        value = schema.get(key)
        if isinstance(value, dict):
            found.update(value)
    return found


def _union(members: list[Any]) -> Any:
    unique: list[Any] = []
    for member in members:
        if member is Any:
            return Any
        if member not in unique:
            unique.append(member)
    return functools.reduce(operator.or_, unique) if unique else Any


def _optional(annotation: Any) -> Any:
    return _union([annotation, type(None)])


def _is_literal(value: Any) -> bool:
    return value is None or type(value) in (str, int, bool)


def _is_json(value: Any) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return True
    if isinstance(value, list):
        return len(value) <= 20 and all(map(_is_json, value))
    if isinstance(value, dict):
        return len(value) <= 20 and all(isinstance(k, str) and _is_json(v)
                                        for k, v in value.items())
    return False


def _text(value: Any) -> str:
    return value[:2000] if isinstance(value, str) else ""


# ---- the other way: a Python annotation as a JSON Schema (JSON tool calls) -----------------

_SCHEMA_TYPES = {python: name for name, python in _SIMPLE.items()}


def to_schema(annotation: Any, depth: int = 0) -> dict[str, Any]:
    """A JSON Schema for a tool parameter's annotation, the inverse of ``to_annotation``
    (``{}``, any value, where it cannot say more: the host checks arguments anyway)."""
    if depth > MAX_DEPTH or annotation is Any or isinstance(annotation, str):
        return {}
    if annotation is None or annotation in _SCHEMA_TYPES:
        return {"type": _SCHEMA_TYPES[annotation if annotation is not None else type(None)]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is typing.Union or origin is types.UnionType:
        return {"anyOf": [to_schema(a, depth + 1) for a in args]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [m.value for m in annotation if _is_json(m.value)]}
    if isinstance(annotation, type) and typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        required: frozenset[str] = getattr(annotation, "__required_keys__", frozenset())
        return {"type": "object", "required": sorted(required),
                "properties": {k: to_schema(v, depth + 1) for k, v in hints.items()}}
    base = origin or annotation
    if base in (list, tuple, set, frozenset) or base in _ABC_SEQUENCES:
        items = [a for a in args if a is not Ellipsis]
        if base is tuple and len(args) > 1 and args[1] is not Ellipsis:
            return {"type": "array", "prefixItems": [to_schema(a, depth + 1) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        schema: dict[str, Any] = {"type": "array"}
        if items:
            schema["items"] = to_schema(items[0], depth + 1)
        return schema
    if base is dict or base in _ABC_MAPPINGS:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = to_schema(args[1], depth + 1)
        return schema
    return {}


_ABC_SEQUENCES = (collections.abc.Sequence, collections.abc.MutableSequence,
                  collections.abc.Iterable, collections.abc.Collection, collections.abc.Set)
_ABC_MAPPINGS = (collections.abc.Mapping, collections.abc.MutableMapping)
