"""The walk behind :class:`~codeact_kernel.policy.Policy`: finding violations in a cell.

:func:`find_violations` takes a cell and the :class:`Rules` to check it against (the
policy's settings, resolved, and IPython's own transformer and option parser) and returns
:class:`Violation` s; it knows nothing of the Policy class, which adds the hints and
verdicts. Here are the rule tables, the AST checker, and the line scan for shell habits
that IPython's prefilter would run.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import re
import string
import tokenize
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from IPython.core import magic_arguments
from IPython.core.magics.execution import ExecutionMagics
from IPython.utils.text import DollarFormatter

from .bindings import bound_name, module_bindings


@dataclass(frozen=True)
class Violation:
    """One broken rule: its stable name, what was wrong, and where (1-based line)."""

    rule: str
    message: str
    lineno: int | None = None
    hint: str = field(default="", compare=False)
    """How to fix it; shared by every violation of the rule, so shown once per rule."""


@dataclass(frozen=True)
class Rules:
    """What a cell is checked against."""

    import_allowed: Callable[[str], bool]
    """Whether a dotted module name may be imported."""
    allowed_magics: Collection[str]
    block_open_outside_work: bool
    open_allowed_dirs: Sequence[str]
    transform: Callable[[str], str]
    """IPython's input transformations (``TransformerManager.transform_cell``)."""
    parse_magic_options: Callable[..., tuple[Any, str]]
    """IPython's magic option parser (``Magics.parse_options``), for %timeit and %prun."""


def find_violations(
    code: str, rules: Rules, protected: frozenset[str], work_dir: str | None, depth: int = 0
) -> tuple[str, list[Violation], bool]:
    """Check ``code`` as the kernel will run it: (transformed code, violations, parsed?).

    ``protected`` are the names that must not be rebound (the tools); ``depth`` counts the
    magics (%time, %%capture) whose code is being checked inside another cell.
    """
    try:
        transformed = rules.transform(code)
    except Exception:
        # The kernel runs the same transformer, fails the same way and runs nothing.
        return code, [], False
    found = [Violation(rule, message, lineno)
             for rule, message, lineno in shell_lines(transformed, rules.allowed_magics)]
    try:
        tree = ast.parse(transformed)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return transformed, found, False
    found += Checker(rules, protected, work_dir, depth).run(tree)
    unique = dict.fromkeys(found)
    return transformed, sorted(unique, key=lambda v: v.lineno or 0), True

_BLOCKED_ATTRS = frozenset({
    "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__mro__",
    "__bases__", "__base__", "__self__", "__reduce__", "__reduce_ex__", "__loader__",
    "__spec__", "__import__",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code",
    "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame",
})
_BLOCKED_NAMES = frozenset({"__builtins__", "__loader__", "__spec__"})
_FORMAT_DUNDERS = frozenset({"__name__", "__qualname__", "__module__", "__doc__"})
_DANGEROUS_BUILTINS = {
    "__import__": "use an import statement for an authorized module",
    **dict.fromkeys(("exec", "eval", "compile"), "it runs code built at run time, which "
                    "cannot be checked; write the code directly"),
    "breakpoint": "there is no debugger attached to this kernel",
    **dict.fromkeys(("exit", "quit"), "it would shut the kernel down and lose all state; "
                    "call final_answer(...) to end"),
}
_SHELL_CALLS = frozenset({
    "system", "system_raw", "system_piped", "getoutput", "getstatusoutput", "popen", "Popen",
    "check_output", "check_call", "execl", "execle", "execlp", "execv", "execve", "execvp",
    "execvpe", "spawnl", "spawnlp", "spawnv", "spawnvp", "posix_spawn", "posix_spawnp",
})
_IPYTHON_INTERNALS = frozenset({
    "alias_manager", "magics_manager", "prefilter_manager", "input_transformer_manager",
    "input_transformers_post", "input_transformers_cleanup", "ast_transformers", "automagic",
    "autocall", "register_magic_function", "register_magics", "find_magic",
    "find_line_magic", "find_cell_magic", "run_cell", "run_cell_async", "run_code",
    "run_ast_nodes", "safe_execfile", "safe_execfile_ipy", "safe_run_module", "runcode",
    "define_macro",
})
_SHELL_RECEIVER_ONLY = frozenset({"ex", "ev", "magic"})  # too generic to flag on any object
_MAGIC_RUNNERS = {"run_line_magic": False, "run_cell_magic": True}
_SHELL_MAGICS = frozenset({
    "!", "system", "sx", "sc", "bash", "sh", "script", "perl", "ruby", "python", "python2",
    "python3", "pypy", "rehashx",
})
_NO_VAR_EXPAND = frozenset({"time", "timeit", "prun", "debug"})
_OPTION_SPECS = {"timeit": "n:r:tcp:qov:", "prun": "D:l:rs:T:q"}
_MAGIC_HINTS = {
    **dict.fromkeys(("pip", "conda", "mamba", "micromamba", "uv"),
                    "Packages cannot be installed; use the authorized imports."),
    **dict.fromkeys(("cd", "pushd", "popd", "bookmark"),
                    "The working folder is fixed; use paths relative to it."),
    **dict.fromkeys(("writefile", "file"),
                    "Write files from Python, e.g. pathlib.Path('out.txt').write_text(text)."),
    **dict.fromkeys(("run", "load", "loadpy"), "Write the code in the cell itself."),
    **dict.fromkeys(("env", "set_env"), "The environment is fixed in the sandbox."),
    **dict.fromkeys(("reset", "reset_selective", "xdel"),
                    "Resetting would delete the tools; use `del name` on your own variables."),
}
# Aliases an IPython kernel defines, common shell commands, and the line magics that
# automagic would reach without a `%`: a bare line starting with one of these is a shell habit.
_ALIASES = frozenset("cat cp ldir lf lk ll ls lx mkdir mv rm rmdir clear more less man".split())
_SHELL_WORDS = _ALIASES | frozenset(
    "apt apt-get brew chmod chown curl echo export git grep head kill ps pwd python python3 "
    "source sudo tail tar touch unzip wget which".split())
_LINE_MAGICS = frozenset(
    "alias alias_magic autoawait autocall automagic bookmark cd code_wrap colors conda config "
    "debug dhist dirs doctest_mode ed edit env gui hist history killbgscripts load load_ext "
    "loadpy logoff logon logstart logstate logstop macro mamba micromamba notebook page "
    "pastebin pdb pfile pip popd prun psearch psource pushd pycat pylab recall rehashx "
    "reload_ext rep rerun reset reset_selective run save sc set_env store sx system tb "
    "unalias unload_ext uv xdel".split())
_LINE_WORD = re.compile(r"^[ \t]*([A-Za-z_][\w.-]*)[ \t]+\S", re.MULTILINE)
_SHELL_LINE = re.compile(r"([A-Za-z_][\w.-]*)[ \t]+(\S.*)", re.DOTALL)
# `ls -la` and `cd /tmp` are valid Python (subtraction, division) but never written so
_SHELL_ARG = re.compile(r"--?[A-Za-z]|/[\w.~]")


def shell_lines(code: str, allowed_magics: Collection[str]) -> Iterator[tuple[str, str, int]]:
    """Flag statements that look like automagic or alias calls (``cd /tmp``)."""
    if not any(w in _SHELL_WORDS or w in _LINE_MAGICS for w in _LINE_WORD.findall(code)):
        return  # a cheap pass first: tokenizing every cell again costs as much as IPython
    for lineno, text in _logical_lines(code):
        match = _SHELL_LINE.fullmatch(text)
        if match is None:
            continue
        word, rest = match.groups()
        if word in allowed_magics or word not in _SHELL_WORDS | _LINE_MAGICS:
            continue
        if _parses(text) and not _SHELL_ARG.match(rest):
            continue  # ordinary Python that happens to start with such a name
        if word in _SHELL_WORDS:
            yield "shell", f"`{text}` is a shell command", lineno
        else:
            msg = f"`{text}` is the magic %{word} without its %, which is not allowed"
            yield "magic", msg, lineno


class Checker:
    """One pass over a parsed cell; collects violations."""

    def __init__(
        self, rules: Rules, protected: frozenset[str], work_dir: str | None, depth: int
    ) -> None:
        self.rules, self.protected, self.work_dir, self.depth = rules, protected, work_dir, depth
        self.found: list[Violation] = []
        self.call_funcs: set[int] = set()
        self.shell_names: set[str] = set()

    def add(self, rule: str, message: str, lineno: int | None) -> None:
        self.found.append(Violation(rule, message, lineno))

    def run(self, tree: ast.Module) -> list[Violation]:
        # ast.walk is iterative, so deeply nested expressions cannot overflow the stack here
        nodes = list(ast.walk(tree))
        self.call_funcs = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
        self.shell_names = {
            t.id for n in nodes if isinstance(n, ast.Assign) and _is_get_ipython(n.value)
            for t in n.targets if isinstance(t, ast.Name)
        }
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                self.imports(node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.name(node)
            elif isinstance(node, ast.Attribute):
                self.attribute(node.attr, node.value, node.lineno, id(node) in self.call_funcs)
            elif isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.string(node.value, node.lineno)
        # The scope-aware walk is the costly part; most cells call tools but never rebind them.
        if any(bound_name(n) in self.protected for n in nodes):
            self.redefinitions(tree)
        return self.found

    def redefinitions(self, tree: ast.Module) -> None:
        for name, lineno in module_bindings(tree):
            if name in self.protected:
                self.add("tool-redefinition", f"`{name}` is a tool that is already defined in "
                         "the kernel; call it, do not define or stub it", lineno)

    def imports(self, node: ast.Import | ast.ImportFrom) -> None:
        allowed = self.rules.import_allowed
        if isinstance(node, ast.ImportFrom):
            if node.level:
                self.add("import", "relative imports are not available in the kernel",
                         node.lineno)
            elif node.module and not allowed(node.module) and not all(
                a.name != "*" and allowed(f"{node.module}.{a.name}") for a in node.names
            ):
                self.add("import", f"import from '{node.module}' is not allowed", node.lineno)
            return
        for alias in node.names:
            top = alias.name.split(".")[0]
            if not allowed(alias.name):
                self.add("import", f"import of '{alias.name}' is not allowed", node.lineno)
            elif alias.asname is None and not allowed(top):
                # `import a.b` binds `a`, which gives the code all of `a`
                self.add("import", f"`import {alias.name}` binds '{top}', which is not allowed;"
                         f" write `from {top} import {alias.name.split('.')[1]}` instead",
                         node.lineno)

    def name(self, node: ast.Name) -> None:
        if node.id in _DANGEROUS_BUILTINS:
            why = _DANGEROUS_BUILTINS[node.id]
            self.add("dangerous-builtin", f"`{node.id}` is not allowed: {why}", node.lineno)
        elif node.id in _BLOCKED_NAMES:
            self.add("dunder", f"`{node.id}` is not allowed", node.lineno)

    def attribute(self, attr: str, receiver: ast.expr, lineno: int, called: bool) -> None:
        shell_like = self.is_shell(receiver)
        if attr in _BLOCKED_ATTRS:
            self.add("dunder", f"access to `.{attr}` is not allowed", lineno)
        elif attr in _IPYTHON_INTERNALS or (shell_like and attr in _SHELL_RECEIVER_ONLY):
            self.add("ipython-api", f"`.{attr}` of the IPython shell is not allowed", lineno)
        elif not called and attr in _SHELL_CALLS and shell_like:
            self.add("shell", f"`.{attr}` runs shell commands", lineno)
        elif not called and attr in _MAGIC_RUNNERS and shell_like:
            self.add("ipython-api", f"`.{attr}` must be called directly with a literal "
                     "magic name", lineno)

    def is_shell(self, node: ast.expr) -> bool:
        return _is_get_ipython(node) or (isinstance(node, ast.Name) and node.id in self.shell_names)

    def call(self, node: ast.Call) -> None:
        func = node.func
        fname = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute):
            if func.attr in _SHELL_CALLS:
                command = _str_const(node.args[0]) if node.args else None
                what = f"the shell command `{command}`" if command else "a shell command"
                self.add("shell", f"`.{func.attr}(...)` would run {what}", node.lineno)
            elif func.attr in _MAGIC_RUNNERS:
                self.magic(node, _MAGIC_RUNNERS[func.attr])
        if fname in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
            attr = _str_const(node.args[1])
            if attr is not None and attr not in _BLOCKED_ATTRS:  # string() reports those
                self.attribute(attr, node.args[0], node.lineno, False)
        is_io_open = (isinstance(func, ast.Attribute) and func.attr == "open"
                      and isinstance(func.value, ast.Name) and func.value.id == "io")
        if (fname == "open" or is_io_open) and self.rules.block_open_outside_work:
            self.open(node)

    def magic(self, node: ast.Call, cell: bool) -> None:
        args = _call_args(node, ("magic_name", "line", "cell")[: 3 if cell else 2])
        name, line, body = args[0], args[1], args[2] if cell else None
        prefix = "%%" if cell else "%"
        if name is None:
            self.add("magic", "the magic name must be a literal string", node.lineno)
            return
        if name not in self.rules.allowed_magics:
            rule = "shell" if name in _SHELL_MAGICS else "magic"
            hint = _MAGIC_HINTS.get(name, "")
            self.add(rule, f"{prefix}{name} is not allowed. {hint}".strip(), node.lineno)
            return
        if line is None or (cell and body is None):
            self.add("magic", f"the arguments of {prefix}{name} must be literal", node.lineno)
            return
        if name not in _NO_VAR_EXPAND and _expands(line):
            self.add("magic", f"IPython evaluates {{...}} and $name in the arguments of "
                     f"{prefix}{name}; write them literally", node.lineno)
        for word in [] if name in _OPTION_SPECS or name == "time" else re.findall(r"\w+", line):
            if word in _BLOCKED_ATTRS:
                self.add("dunder", f"{prefix}{name} would reach `{word}`", node.lineno)
        for code, offset in self.magic_code(name, line, body):
            self.inner(code, offset, node.lineno, f"{prefix}{name}")

    def magic_code(self, name: str, line: str, body: str | None) -> list[tuple[str, int | None]]:
        """The Python code a magic will run, with its line offset (None: the magic's line)."""
        code: list[tuple[str, int | None]] = [(body, 1)] if body is not None and name in (
            "time", "timeit", "capture", "prun") else []
        try:
            if name == "time" and body is None:
                _, extra = magic_arguments.parse_argstring(
                    ExecutionMagics.time, line, partial=True)
                code.append((" ".join(extra), None))
            elif name in _OPTION_SPECS:
                _, stmt = self.rules.parse_magic_options(
                    line, _OPTION_SPECS[name], posix=False, strict=False,
                    preserve_non_opts=True)
                code.append((stmt, None))
        except Exception:
            pass  # IPython's parser fails the same way in the kernel, so the magic never runs
        return code

    def inner(self, code: str, offset: int | None, lineno: int, magic: str) -> None:
        if self.depth >= 4:
            self.add("magic", f"{magic} is nested too deeply to be checked", lineno)
            return
        if not code.strip():
            return
        _, found, parsed = find_violations(code, self.rules, self.protected, self.work_dir,
                                           self.depth + 1)
        if not parsed:
            self.add("magic", f"the code given to {magic} does not parse, so it cannot be "
                     "checked; fix its syntax", lineno)
        for v in found:
            where = lineno if offset is None or v.lineno is None else lineno + offset + v.lineno - 1
            self.found.append(dataclasses.replace(v, lineno=where))

    def open(self, node: ast.Call) -> None:
        target = node.args[0] if node.args else next(
            (k.value for k in node.keywords if k.arg == "file"), None)
        path = _static_path(target) if target is not None else None
        if path is not None and not _path_allowed(
            path, self.work_dir, self.rules.open_allowed_dirs
        ):
            self.add("open-outside-workdir", f"open('{path}') is outside the work folder",
                     node.lineno)

    def string(self, value: str, lineno: int) -> None:
        if value in _BLOCKED_ATTRS or value in _BLOCKED_NAMES:
            self.add("dunder", f"the string '{value}' names an interpreter internal", lineno)
        for name in _format_walk(value):
            self.add("dunder", f"the format string {value!r} reaches `{name}`", lineno)


def _is_get_ipython(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "get_ipython") or (
        isinstance(func, ast.Attribute) and func.attr == "get_ipython")


def _str_const(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _call_args(node: ast.Call, params: tuple[str, ...]) -> list[str | None]:
    """Literal string values of the named parameters, positional or keyword (None if not)."""
    values: list[ast.expr | None] = [*node.args[: len(params)]]
    values += [None] * (len(params) - len(values))
    for kw in node.keywords:
        if kw.arg in params:
            values[params.index(kw.arg)] = kw.value
    return [_str_const(v) for v in values]


def _expands(line: str) -> bool:
    """Whether IPython's var_expand would evaluate anything in a magic's arguments."""
    try:
        return any(field is not None for _, field, _, _ in DollarFormatter().parse(line))
    except ValueError:
        return False  # var_expand leaves malformed text as it is


def _format_walk(value: str) -> Iterator[str]:
    """Blocked names reached by the replacement fields of a str.format template."""
    if "{" not in value:
        return
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError:
        return  # .format() would raise before walking anything
    for _, field_name, spec, _ in parsed:
        for part in re.split(r"[.\[\]]", field_name or "")[1:]:
            part = part.strip()
            # Stricter than attribute access: walks here are invisible to the AST and only
            # a name or a doc ever needs reading from a template.
            if part in _BLOCKED_ATTRS or (_is_dunder(part) and part not in _FORMAT_DUNDERS):
                yield part
        if spec:
            yield from _format_walk(spec)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _static_path(node: ast.expr) -> str | None:
    """The path an open() argument names, when the code alone fixes it (or its folder)."""
    if (value := _str_const(node)) is not None:
        return value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = _str_const(node.values[0])
        if head and "/" in head:
            return head[: head.rindex("/") + 1]
    return None


def _path_allowed(path: str, work_dir: str | None, extra_dirs: Sequence[str]) -> bool:
    if not os.path.isabs(path):
        if work_dir is None:
            return os.path.normpath(path).split(os.sep)[0] != ".."
        path = os.path.join(work_dir, path)
    path = os.path.normpath(path)
    for folder in [work_dir, *extra_dirs]:
        if folder:
            folder = os.path.normpath(folder)
            if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
                return True
    return False


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _logical_lines(code: str) -> list[tuple[int, str]]:
    """(first line number, text) of each logical line, skipping strings and comments."""
    lines = code.splitlines()
    spans: list[tuple[int, int, int]] = []
    start: tuple[int, int] | None = None
    skip = {tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.NL,
            tokenize.ENCODING, tokenize.ENDMARKER}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in skip:
                continue
            start = start or tok.start
            if tok.type == tokenize.NEWLINE:
                spans.append((*start, tok.start[0]))
                start = None
    except (tokenize.TokenError, SyntaxError):
        pass  # keep what was read; the cell will not compile anyway
    if start is not None:
        spans.append((*start, start[0]))
    return [
        (row, "\n".join([lines[row - 1][col:], *lines[row:end]]).rstrip())
        for row, col, end in spans if row <= len(lines)
    ]
