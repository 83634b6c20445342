"""How the tools are shown: in the model's prompt (in full, or as an index for large tool
sets), as function schemas for JSON tool calls, in the trace's metadata, and in a trace's
replay setup cell."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ..kernel_side import source, templates
from .mcp_schema import to_schema
from .serialize import FINAL_ANSWER
from .tool import Tool

LISTINGS = ("full", "signature", "index", "auto")

INDEX_HEAD = """\
{count} tools; each line gives a tool's name and what it does. Their signatures and docs
are in the kernel: print(search_tools("words about the task")) shows the tools that
match, with their signatures; help(name) shows one tool's whole documentation. Find a
tool's signature before you call it.
"""


def prompt_docs(tools: Sequence[Tool], listing: str, threshold: int) -> list[str]:
    """The ``$tools`` entries of the system prompt.

    ``listing``: "full" (each tool's def line and docstring), "signature" (the same facts
    as a signature line with its doc indented under it: no ``def``, no quotes, which small
    models copy into their code less), "index" (a name and a one-line summary per tool;
    search_tools() and help() give the rest) or "auto" (index past ``threshold`` tools,
    else full).
    """
    if listing not in LISTINGS:
        raise ValueError(f"tool listing {listing!r}: use one of {', '.join(LISTINGS)}")
    if listing == "index" or (listing == "auto" and len(tools) > threshold):
        return [index_listing(tools)] if tools else []
    docs: list[str] = []
    seen: set[str] = set()
    for t in tools:
        if t.namespace and t.namespace not in seen:
            seen.add(t.namespace)
            docs.append(f"# MCP server {t.namespace}: its tools are attributes of "
                        f"`{t.namespace}`, e.g. {t.name}(...)")
        docs.append(signature_doc(t) if listing == "signature" else t.prompt_doc())
    return docs


def signature_doc(t: Tool) -> str:
    """``- name(params) -> ret`` and the docstring's non-blank lines indented under it."""
    lines = [line.rstrip() for line in textwrap.dedent(t.doc).splitlines() if line.strip()]
    return "\n".join([f"- {t.header()}", *(f"    {line}" for line in lines)])


def index_listing(tools: Sequence[Tool]) -> str:
    lines = [INDEX_HEAD.format(count=len(tools))]
    for t in tools:
        summary = t.description.split(". ")[0].strip().rstrip(".") or "(no description)"
        lines.append(f"- {t.name}: {summary[:120]}")
    return "\n".join(lines)


def kernel_names(tools: Sequence[Tool]) -> list[str]:
    """The names tools take in the kernel's namespace (for the policy to protect)."""
    names = {t.namespace or t.name for t in tools}
    return sorted(names | {"search_tools", "ToolCallError", "ToolDenied"})


def tool_meta(t: Tool) -> dict[str, Any]:
    """A tool as the trace records it (its replay stub is rebuilt from this)."""
    meta: dict[str, Any] = {"name": t.name, "signature": t.header(), "doc": t.doc}
    if t.namespace:
        meta.update(namespace=t.namespace, stub=getattr(t, "stub_name", t.name),
                    namespace_doc=t.namespace_doc)
    if t.requires_approval:
        meta["requires_approval"] = True
    return meta


def replay_stubs(tools: list[dict[str, Any]]) -> str:
    """Replay setup code: a stub per recorded tool, serving the recorded results, and an
    MCP server's tools gathered in its namespace as in the live kernel."""
    stubs: list[str] = []
    spaces: list[str] = []
    for meta in tools:
        name, signature = str(meta["name"]), str(meta["signature"])
        stub = str(meta.get("stub") or name)
        stubs.append(templates.REPLAY_STUB.substitute(
            stub=stub, parameters=signature[len(name):], doc=repr(str(meta.get("doc", ""))),
            name=repr(name)))
        space = meta.get("namespace")
        if space:
            if space not in spaces:
                spaces.append(space)
                stubs.append(templates.REPLAY_NAMESPACE.substitute(
                    space=space, name=repr(space),
                    doc=repr(str(meta.get("namespace_doc", "")))))
            attr = name.split(".", 1)[1]
            stubs.append(templates.REPLAY_IN_NAMESPACE.substitute(space=space, attr=repr(attr),
                                                                  stub=stub))
        else:
            stubs.append(templates.REPLAY_IN_CATALOG.substitute(name=repr(name), stub=name))
    head = templates.REPLAY_TOOLSPACE.substitute(source=repr(source("toolspace.py")))
    return head + "\n" + "\n".join(stubs)



FINAL_ANSWER_SPEC: dict[str, Any] = {"type": "function", "function": {
    "name": FINAL_ANSWER,
    "description": "Give the final answer to the task; this ends the task. Call it once you "
                   "know the answer, alone.",
    "parameters": {"type": "object", "required": ["value"], "properties": {"value": {
        "description": "The answer: a number, a string, a list or an object."}}},
}}


def function_name(t: Tool) -> str:
    """The tool's name in function calls: providers allow [A-Za-z0-9_-] only, so an MCP
    tool ``files.read_text`` is called ``files__read_text``."""
    return t.name.replace(".", "__")


def function_specs(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The tools as OpenAI-style function specs (litellm's ``tools=``), from the same
    signatures and docstrings the kernel's stubs have; ``final_answer`` last."""
    specs: list[dict[str, Any]] = []
    for t in tools:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, param in t.signature.parameters.items():
            schema = to_schema(param.annotation)
            if t.param_docs.get(name):
                schema = {**schema, "description": t.param_docs[name]}
            if param.default is param.empty:
                required.append(name)
            elif _plain_default(param.default):
                schema = {**schema, "default": param.default}
            properties[name] = schema
        specs.append({"type": "function", "function": {
            "name": function_name(t),
            "description": t.description or t.doc.split("\n\n")[0],
            "parameters": {"type": "object", "properties": properties, "required": required},
        }})
    return [*specs, FINAL_ANSWER_SPEC]


def _plain_default(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)
