"""Which names a cell binds in the kernel's global namespace, read from its AST.

The policy uses it to keep a cell from rebinding a tool's name (``departures = ...``,
``def departures``, ``import x as departures``, a ``global`` write inside a function):
the call would then reach the model's object instead of the host tool.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

_NAMED_BINDERS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler,
                  ast.MatchAs, ast.MatchStar)


def module_bindings(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Names the cell binds in the kernel's global namespace, with their line numbers."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        lineno: int = getattr(node, "lineno", 0)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, node.lineno
            yield from _global_writes(node)
            continue  # a new scope: its own names are local
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.comprehension):
            stack += [node.iter, *node.ifs]  # its target is local to the comprehension
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    yield (alias.asname or alias.name.split(".")[0]), lineno
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            yield node.id, lineno
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            yield node.name, lineno
        stack.extend(ast.iter_child_nodes(node))


def bound_name(node: ast.AST) -> str | None:
    """The name a node binds, if it binds one (a superset check for module_bindings)."""
    if isinstance(node, ast.Name):
        return None if isinstance(node.ctx, ast.Load) else node.id
    if isinstance(node, ast.alias):
        return node.asname or node.name.split(".")[0]
    if isinstance(node, _NAMED_BINDERS):
        return node.name
    return None


def _global_writes(scope: ast.AST) -> Iterator[tuple[str, int]]:
    """Names a function declares `global` and then assigns."""
    declared = {n for node in ast.walk(scope) if isinstance(node, ast.Global) for n in node.names}
    for node in ast.walk(scope):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in declared:
            yield node.id, node.lineno
