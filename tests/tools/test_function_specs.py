"""Function specs for JSON tool calls, from the same @tool signatures the kernel stubs use."""

from __future__ import annotations

import enum
from typing import Any, Literal, TypedDict

from codeact_kernel import tool
from codeact_kernel.tools.listing import FINAL_ANSWER_SPEC, function_name, function_specs
from codeact_kernel.tools.mcp_schema import read_schemas, to_annotation, to_schema


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: float
    y: float


def test_annotations_become_schemas() -> None:
    assert to_schema(str) == {"type": "string"}
    assert to_schema(int) == {"type": "integer"}
    assert to_schema(float) == {"type": "number"}
    assert to_schema(bool) == {"type": "boolean"}
    assert to_schema(None) == {"type": "null"}
    assert to_schema(Any) == {}
    assert to_schema(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert to_schema(dict[str, float]) == {"type": "object",
                                           "additionalProperties": {"type": "number"}}
    assert to_schema(int | None) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert to_schema(Literal["a", "b"]) == {"enum": ["a", "b"]}
    assert to_schema(Colour) == {"enum": ["red", "blue"]}
    assert to_schema(tuple[int, str]) == {
        "type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2, "maxItems": 2}
    assert to_schema(Point) == {"type": "object", "required": ["x", "y"], "properties": {
        "x": {"type": "number"}, "y": {"type": "number"}}}
    assert to_schema("SomeForwardRef") == {}


def test_schemas_round_trip_through_the_mcp_reader() -> None:
    # The MCP reader (schema -> annotation) and to_schema are inverses on what both know.
    for annotation in (str, int, float, bool, list[str], dict[str, int], int | None):
        assert to_annotation(to_schema(annotation), {}) == annotation


def test_a_tool_becomes_a_function_spec() -> None:
    @tool
    def convert(amount: float, unit: Literal["kg", "lb"] = "kg", *, note: str | None = None
                ) -> float:
        """Convert an amount.

        Args:
            amount: How much.
            unit: The unit it is in.
        """
        return amount

    spec = function_specs([convert])
    assert spec[-1] == FINAL_ANSWER_SPEC
    function = spec[0]["function"]
    assert function["name"] == "convert"
    assert function["description"] == "Convert an amount."
    params = function["parameters"]
    assert params["required"] == ["amount"]
    assert params["properties"]["amount"] == {"type": "number", "description": "How much."}
    assert params["properties"]["unit"] == {"enum": ["kg", "lb"], "default": "kg",
                                            "description": "The unit it is in."}
    assert params["properties"]["note"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    # read back by the MCP reader, the parameters are the tool's own
    read = read_schemas(params, None, "convert")
    assert [(p.name, p.required) for p in read.params] == [
        ("amount", True), ("unit", False), ("note", False)]


def test_namespaced_names_are_valid_function_names() -> None:
    @tool
    def read_text(path: str) -> str:
        """Read a file."""
        return path

    read_text.name = "files.read_text"
    assert function_name(read_text) == "files__read_text"
