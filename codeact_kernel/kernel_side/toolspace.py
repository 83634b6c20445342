# Tool namespaces and discovery, INSIDE the kernel (and in a trace's replay setup).
#
# Shipped as text after codec.py and rpc.py (one module namespace, "_codeact_rpc"); the
# replay setup cell pastes it too. An MCP server's tools live in a module-like namespace
# named after the server (files.read_text(...)), so help(files) lists them with their
# signatures and docs; search_tools(query) finds tools by the words of their names and
# docs, for tool sets too large to list in the prompt.
import inspect
import re
import types
from typing import Any

# Every published tool stub, by the name the model calls it (files.read_text, get_rate).
TOOL_CATALOG: "dict[str, Any]" = {}


class ToolNamespace(types.ModuleType):
    """The tools of one MCP server; call them as attributes: files.read_text(path=...)."""

    __all__: "list[str]"

    def __repr__(self) -> str:
        names = ", ".join(getattr(self, "__all__", []))
        return f"<tools of {self.__name__}: {names}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        tools = ", ".join(getattr(self, "__all__", [])) or "none"
        raise AttributeError(
            f"{self.__name__} has no tool {name!r}; its tools are: {tools}. "
            "search_tools('words') finds a tool by what it does."
        )


def make_namespace(name: str, doc: str) -> ToolNamespace:
    space = ToolNamespace(name, doc or f"Tools of the MCP server {name}.")
    space.__all__ = []
    return space


def add_to_namespace(space: ToolNamespace, attr: str, stub: Any) -> None:
    stub.__name__ = attr
    stub.__qualname__ = f"{space.__name__}.{attr}"
    stub.__module__ = space.__name__
    setattr(space, attr, stub)
    space.__all__.append(attr)
    TOOL_CATALOG[f"{space.__name__}.{attr}"] = stub


def signature_text(fn: Any) -> str:
    """``(a: int, b: str = 'x') -> dict``: annotations as written, without quotes."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    parts = []
    for param in sig.parameters.values():
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {_ann(param.annotation)}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}"
        parts.append(text)
    ret = sig.return_annotation
    tail = f" -> {_ann(ret)}" if ret is not inspect.Signature.empty else ""
    return f"({', '.join(parts)}){tail}"


def _ann(value: Any) -> str:
    return value if isinstance(value, str) else getattr(value, "__name__", repr(value))


class ToolInfo:
    """One search hit: ``name``, ``signature``, ``doc``; shown as its def line and summary."""

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name
        self.signature = signature_text(fn)
        self.doc = inspect.cleandoc(fn.__doc__ or "")
        self.summary = self.doc.split("\n\n")[0].replace("\n", " ")

    def __repr__(self) -> str:
        return f"{self.name}{self.signature}\n    {self.summary}"


class ToolMatches(list):  # type: ignore[type-arg]
    """search_tools' result: a list of ToolInfo that prints one tool per entry."""

    def __repr__(self) -> str:
        if not self:
            return "(no tool matches; search_tools('') lists them all)"
        return "\n".join(repr(t) for t in self)

    __str__ = __repr__


def search_tools(query: str = "", limit: int = 10) -> ToolMatches:
    """Find host tools by words of their names and descriptions.

    Returns the best matches with their signatures and one-line summaries (print it);
    help(tool) shows a tool's whole documentation.

    Args:
        query: Words describing what you need, e.g. "read file" or "exchange rate".
        limit: How many matches to return at most.
    """
    words = [w for w in re.split(r"[^a-z0-9]+", str(query).lower()) if w]
    scored = []
    for name, fn in TOOL_CATALOG.items():
        info = ToolInfo(name, fn)
        named = name.lower().replace("_", " ").replace(".", " ")
        text = info.doc.lower()
        score = sum(3 * (w in named) + (w in text) for w in words)
        if score or not words:
            scored.append((-score, name, info))
    scored.sort(key=lambda item: (item[0], item[1]))
    return ToolMatches(info for _, _, info in scored[: max(1, int(limit))])
