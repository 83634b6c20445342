"""Host-side tools: ``@tool`` functions that the sandboxed kernel calls over RPC.

In the kernel each tool is a stub with the same name, signature and docstring;
calling it sends the arguments to the ``ToolServer`` on the host (server.py), which
checks them against the signature, runs the real function and sends the result
back. No tool source and no secret ever enters the sandbox.

Wire format (ZMQ REQ in the kernel -> ROUTER on the host, ``ipc://`` socket in
the session folder). Every message is multipart. A request's frame 0 is the
per-session token alone (the host compares it before it reads anything else),
frame 1 a UTF-8 JSON header (at most ``ToolServer.max_header_bytes``), further
frames binary blobs referenced by index; a reply has no token frame.

* request:  ``{"v": 1, "tool": NAME, "args": [...], "kwargs": {...},
  "accept": [formats the kernel can rebuild]}``. Arguments are
  plain JSON. For ``final_answer`` the single argument ``value`` is an encoded
  value (below) and may reference blobs.
* reply:    ``{"ok": true, "result": VALUE, "notes": [...]}`` or
  ``{"ok": false, "error": {"type": NAME, "message": TEXT, "category": C}}``
  with C one of tool, arguments, unknown_tool, timeout, busy, protocol, refused
  (no agent step is running: see tools/window.py).
* encoded value: JSON, where ``{"$codeact": KIND, ...}`` marks what JSON cannot
  hold: ``dataframe``/``series`` (Parquet blob, or "split" JSON), ``ndarray``
  (.npy blob, never pickled), ``png``, ``bytes``, ``text`` (a repr), ``float``
  (nan/inf) and ``dict`` (an escaped user dict that had a "$codeact" key).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import keyword
import math
import re
import typing
from collections.abc import Callable
from typing import Any, overload

from ..errors import ToolError
from ..kernel_side import templates
from .args import ArgumentMismatch, annotation_text, check_value
from .serialize import FINAL_ANSWER
from .stubs import rpc_call, stub_source

__all__ = ["Tool", "tool"]

RESERVED_NAMES = frozenset({FINAL_ANSWER, "ToolCallError", "get_ipython"})
_SECTION_RE = re.compile(r"^(\w[\w ]*):\s*$")
_ARGS_HEADERS = ("args", "arguments", "parameters", "params")
_ENTRY_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


class Tool:
    """A typed, documented host function that kernel code can call.

    ``requires_approval``: each call waits for a human's yes (or the configured
    default, see ``Agent.approval``) before it runs.
    """

    # An MCP server's tools live in a namespace of the kernel (``files.read_text``).
    namespace: str | None = None
    namespace_doc = ""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *,
                 requires_approval: bool = False) -> None:
        if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
            raise ToolError(
                f"@tool needs a function, got {type(fn).__name__} {fn!r}; wrap it in a "
                "def with annotated parameters and a docstring"
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.requires_approval = requires_approval
        _check_name(self.name)
        raw = inspect.signature(fn)
        hints = _resolve_hints(fn)
        _check_annotations(self.name, raw, hints)
        self.signature = raw.replace(
            parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                        for p in raw.parameters.values()],
            return_annotation=hints.get("return", raw.return_annotation),
        )
        self.doc = inspect.getdoc(fn) or ""
        if not self.doc.strip():
            raise ToolError(
                f"tool {self.name} has no docstring; add one that says what it does, with an "
                "'Args:' section describing each parameter (the model only sees the docstring)"
            )
        self.description, self.param_docs = parse_docstring(self.doc)
        self._is_async = inspect.iscoroutinefunction(fn)

    @classmethod
    def from_path(cls, path: str) -> Tool:
        """Load a tool from ``"pkg.module:name"`` (the CLI's ``--tools``)."""
        module_name, sep, attr = path.partition(":")
        if not sep:
            module_name, _, attr = path.rpartition(".")
        if not module_name or not attr:
            raise ToolError(f"tool path {path!r} must look like 'pkg.module:function'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ToolError(
                f"cannot import module {module_name!r} for tool {path!r}: {exc}. Check the "
                "spelling and that the module is importable (installed, or on PYTHONPATH)"
            ) from exc
        except Exception as exc:
            raise ToolError(
                f"importing {module_name!r} for tool {path!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        obj = getattr(module, attr, None)
        if obj is None:
            found = sorted(
                n for n, v in vars(module).items()
                if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, Tool))
            )
            raise ToolError(
                f"module {module_name!r} has no attribute {attr!r}; functions there: "
                + (", ".join(found[:20]) or "none")
            )
        if isinstance(obj, Tool):
            return obj
        if not inspect.isfunction(obj):
            raise ToolError(f"{path!r} is a {type(obj).__name__}, not a function")
        return cls(obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name}{self.signature}>"

    # ---- rendering -------------------------------------------------------------------

    def header(self, *, quote: bool = False) -> str:
        """``name(params) -> ret``; ``quote`` renders annotations as string literals."""
        return f"{self.name}{_render_signature(self.signature, quote=quote)}"

    def prompt_doc(self) -> str:
        """The tool as the model should see it: its def line and docstring."""
        body = self.doc.replace('"""', r"\"\"\"")
        lines = body.splitlines() or [""]
        indented = "\n".join(("    " + line).rstrip() for line in lines)
        return f'def {self.header()}:\n    """{indented.lstrip()}\n    """'

    def render_stub(self) -> str:
        """Kernel-side stub: same name, signature and docstring; calls the host."""
        positional, named = [], []
        for param in self.signature.parameters.values():
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                positional.append(param.name)
            else:
                named.append(param.name)
        return stub_source(self.header(quote=True), self.fn.__doc__,
                           rpc_call(self.name, positional, named))

    # ---- calling from untrusted arguments --------------------------------------------

    def bind(self, args: Any, kwargs: Any) -> dict[str, Any]:
        """Check JSON arguments against the signature; ToolError names the signature."""
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ToolError(f"{self.header()}: arguments must be a list and a dict")
        unknown = [str(k)[:50] for k in kwargs if k not in self.signature.parameters]
        if unknown:
            raise ToolError(f"{self.header()}: unexpected argument(s) {', '.join(unknown)}")
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ToolError(f"{self.header()}: {exc}") from None
        bound.apply_defaults()
        checked: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            param = self.signature.parameters[name]
            if value is param.default and param.default is not inspect.Parameter.empty:
                checked[name] = value  # host defaults are trusted as written
                continue
            try:
                checked[name] = check_value(value, param.annotation, f"argument {name!r}")
            except ArgumentMismatch as exc:
                raise ToolError(f"{self.header()}: {exc}") from None
        return checked

    def invoke(self, arguments: dict[str, Any]) -> Any:
        """Call the function with checked arguments (as returned by :meth:`bind`)."""
        args, kwargs = [], {}
        for name, value in arguments.items():
            if self.signature.parameters[name].kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[name] = value
        if self._is_async:
            import asyncio

            return asyncio.run(self.fn(*args, **kwargs))
        return self.fn(*args, **kwargs)


@overload
def tool(fn: Callable[..., Any], *, name: str | None = None,
         requires_approval: bool = False) -> Tool: ...
@overload
def tool(fn: None = None, *, name: str | None = None,
         requires_approval: bool = False) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a host tool from a typed, documented function: ``@tool``, ``@tool(name=...)``
    or ``@tool(requires_approval=True)`` (a human approves each call)."""
    if fn is None:
        return lambda f: Tool(f, name=name, requires_approval=requires_approval)
    if isinstance(fn, Tool):
        if (name is None or name == fn.name) and not requires_approval:
            return fn
        return Tool(fn.fn, name=name or fn.name,
                    requires_approval=requires_approval or fn.requires_approval)
    return Tool(fn, name=name, requires_approval=requires_approval)


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and the Google-style ``Args:`` entries."""
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION_RE.match(line.strip()):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    current: str | None = None
    section_indent: int | None = None
    entry_indent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        header = _SECTION_RE.match(text)
        if section_indent is None or (text and indent <= section_indent):
            section_indent = indent if header and header.group(1).lower() in _ARGS_HEADERS else None
            current, entry_indent = None, None
            continue
        if not text:
            continue
        entry = _ENTRY_RE.match(text)
        if entry and (entry_indent is None or indent <= entry_indent):
            entry_indent, current = indent, entry.group(1)
            params[current] = entry.group(3).strip()
        elif current is not None:
            params[current] = f"{params[current]} {text}".strip()
    return " ".join(summary), params


def _check_name(name: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ToolError(f"tool name {name!r} is not a Python identifier; pass name='...'")
    if name in RESERVED_NAMES or name.startswith("_codeact"):
        raise ToolError(f"tool name {name!r} is reserved in the kernel; pass another name='...'")
    if hasattr(builtins, name):
        raise ToolError(
            f"tool name {name!r} would shadow the builtin {name}() in the kernel; "
            "pass another name='...'"
        )


def _resolve_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # forward references that cannot be resolved stay strings
        return dict(getattr(fn, "__annotations__", {}))


def _check_annotations(name: str, sig: inspect.Signature, hints: dict[str, Any]) -> None:
    problems: list[str] = []
    for param in sig.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ToolError(
                f"tool {name}: *{param.name} / **{param.name} are not supported; give the "
                "tool named, annotated parameters (the model calls it with JSON arguments)"
            )
        if param.name.startswith("_codeact"):
            raise ToolError(f"tool {name}: parameter name {param.name!r} is reserved")
        if param.name not in hints:
            problems.append(f"parameter {param.name!r}")
    if "return" not in hints:
        problems.append("the return value")
    if problems:
        raise ToolError(
            f"tool {name} needs type annotations on every parameter and the return; missing on "
            f"{', '.join(problems)}. Fix: annotate them, e.g. "
            f"def {name}(city: str) -> int: ..."
        )


def _render_signature(sig: inspect.Signature, *, quote: bool) -> str:
    def ann(value: Any) -> str:
        text = annotation_text(value)
        return repr(text) if quote else text

    parts: list[str] = []
    seen_kw_only = False
    params = list(sig.parameters.values())
    for i, param in enumerate(params):
        if param.kind is inspect.Parameter.KEYWORD_ONLY and not seen_kw_only:
            parts.append("*")
            seen_kw_only = True
        text = f"{param.name}: {ann(param.annotation)}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {_default_text(param.default, quote)}"
        parts.append(text)
        nxt = params[i + 1] if i + 1 < len(params) else None
        if param.kind is inspect.Parameter.POSITIONAL_ONLY and (
            nxt is None or nxt.kind is not inspect.Parameter.POSITIONAL_ONLY
        ):
            parts.append("/")
    return f"({', '.join(parts)}) -> {ann(sig.return_annotation)}"


def _default_text(value: Any, for_stub: bool) -> str:
    text = repr(value)
    if not for_stub or _is_literal(value, text):
        return text
    # Not a literal: the kernel shows the host's repr and lets the host apply it.
    return templates.HOST_DEFAULT.substitute(text=repr(text))


def _is_literal(value: Any, text: str) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if value is not None and type(value) not in (bool, int, float, str, list, tuple, dict):
        return False
    try:
        return bool(ast.literal_eval(text) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
