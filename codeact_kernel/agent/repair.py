"""Stub repair: a reply that redefines or rebinds a tool, made runnable instead of refused.

Small models copy the tools' listing into their code (``def departures(...): ...``),
import a tool as if it were a module (``from molar_mass import molar_mass``), or store a
tool's result under the tool's own name (``screenings = screenings(day)``). The policy
refuses all three, and a refused reply tends to come back verbatim, step after step.
The repair drops the top-level redefinitions and imports and renames the rebound
variable, so the rest of the reply runs against the real tools; the policy then checks
the repaired code as usual, and the trace keeps the original.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from ..policy.rules import Policy, Verdict


@dataclass
class Repair:
    """The repaired code and what was changed, in words for the model and the trace."""

    code: str
    changes: list[str] = field(default_factory=list)


def repair_tool_rebinding(code: str, tools: Collection[str]) -> Repair | None:
    """``code`` without its top-level definitions and imports of ``tools`` and with
    variables named after a tool renamed; None when there is nothing to repair or it does
    not parse. An import is dropped only when every name it binds is a tool's."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    names = set(tools)
    lines = code.splitlines(keepends=True)
    drop: list[tuple[int, int]] = []  # 1-based inclusive line ranges
    changes: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name in names:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            drop.append((first, node.end_lineno or node.lineno))
            changes.append(f"dropped your definition of {node.name}(): the real tool runs")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = _bound_names(node)
            if bound and set(bound) <= names and not _shares_a_line(node, tree.body):
                drop.append((node.lineno, node.end_lineno or node.lineno))
                changes.append(f"dropped your import of {', '.join(bound)}: the "
                               + ("tool is" if len(bound) == 1 else "tools are")
                               + " already defined")
    dropped = {n for start, end in drop for n in range(start, end + 1)}
    renames = _rebinding_renames(tree, names, dropped, _all_names(tree))
    if not drop and not renames:
        return None
    for tool_name, new in sorted({(n.id, new) for n, new in renames}):
        changes.append(f"renamed your variable {tool_name} to {new}: {tool_name} is the tool")
    edited = _rename(lines, renames)
    kept = [line for index, line in enumerate(edited, start=1) if index not in dropped]
    repaired = "".join(kept).strip("\n")
    if not repaired.strip():
        return None  # the reply was nothing but redefinitions
    return Repair(repaired, changes)


def _bound_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The names an import statement binds (none for ``import *``)."""
    if any(alias.name == "*" for alias in node.names):
        return []
    return [alias.asname or alias.name.split(".")[0] for alias in node.names]


def _shares_a_line(node: ast.stmt, body: list[ast.stmt]) -> bool:
    """Whether another statement sits on one of ``node``'s lines (``import x; y = 1``),
    which dropping those lines would take with it."""
    end = node.end_lineno or node.lineno
    return any(other is not node and other.lineno <= end
               and (other.end_lineno or other.lineno) >= node.lineno for other in body)


def _all_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _rebinding_renames(tree: ast.Module, tools: set[str], dropped: set[int],
                       taken: set[str]) -> list[tuple[ast.Name, str]]:
    """The Name nodes to rename: a tool's name stored to, and read back outside a call."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    stored = {n.id for n in ast.walk(tree)
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id in tools
              and n.lineno not in dropped}
    new_names: dict[str, str] = {}
    for name in sorted(stored):
        new = f"{name}_result"
        while new in taken:
            new += "_"
        new_names[name] = new
    return [(n, new_names[n.id]) for n in ast.walk(tree)
            if isinstance(n, ast.Name) and n.id in new_names and n.lineno not in dropped
            and (isinstance(n.ctx, ast.Store) or id(n) not in called)]


def _rename(lines: list[str], renames: list[tuple[ast.Name, str]]) -> list[str]:
    out = list(lines)
    # Right to left on each line, so earlier offsets stay valid.
    for node, new in sorted(renames, key=lambda r: (r[0].lineno, r[0].col_offset),
                            reverse=True):
        index = node.lineno - 1
        raw = out[index].encode()  # ast offsets count UTF-8 bytes
        start, end = node.col_offset, node.end_col_offset or node.col_offset
        out[index] = (raw[:start] + new.encode() + raw[end:]).decode()
    return out


def check_with_repair(policy: Policy, record: Any, code: str, tools: Collection[str],
                      work_dir: str | None, repair: bool) -> Verdict:
    """The policy's verdict on ``code``, or on its stub repair when ``repair`` is on and the
    repaired code passes; ``record`` (a StepRecord) keeps the verdict and any repair."""
    verdict = policy.check(code, tool_names=tools, work_dir=work_dir)
    fix = repair_tool_rebinding(code, tools) if repair and not verdict.allowed else None
    fixed = policy.check(fix.code, tool_names=tools, work_dir=work_dir) if fix else None
    if fix is not None and fixed is not None and fixed.allowed:
        record.repaired_from, record.repairs, record.code = code, fix.changes, fix.code
        verdict = fixed
    record.policy = {"allowed": verdict.allowed,
                     "violations": [asdict(v) for v in verdict.violations]}
    return verdict
