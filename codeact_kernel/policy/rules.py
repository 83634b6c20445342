"""The AST policy: checks on model-written code before the kernel runs it.

The OS sandbox (bubblewrap: no network, read-only filesystem, resource limits) is the
security boundary. This policy is a second layer and a source of helpful messages, never the
only guard: Python is too dynamic for static checks to be complete. Its jobs are to stop the
obvious escapes and mistakes early, and to tell the model which rule it broke and how to fix
its code.

The code is checked *after* IPython's own input transformations, so the policy sees what the
kernel will run: ``!ls`` becomes ``get_ipython().system('ls')`` and ``%%bash`` becomes
``get_ipython().run_cell_magic('bash', ...)``. Automagics and shell aliases are applied later,
by IPython's prefilter, and depend on kernel state; ``kernel_side/harden.py`` turns them
off in the kernel, and the policy also flags lines that look like them (``ls -la``).

Rules, with stable names used in traces: ``import``, ``shell``, ``magic``, ``ipython-api``,
``dangerous-builtin``, ``dunder``, ``tool-redefinition``, ``open-outside-workdir``.

Decisions worth knowing:

- Code that does not parse is allowed through with no violation: the kernel compiles nothing,
  so nothing runs, and its SyntaxError traceback teaches the model more than a policy message.
  The one exception is a shell habit (``pip install x``), flagged because the hint helps more.
- ``globals()``, ``locals()``, ``vars()`` and ``dir()`` are allowed: they show the user's own
  namespace; the escape through them (``['__builtins__']``) is caught as a string.
- ``__class__``, ``__dict__``, ``__name__``, ``__init__`` and other everyday dunders are
  allowed, since data scientists write classes; what a chain would reach next
  (``__bases__``, ``__subclasses__``, ``__globals__``, frames) is blocked. Format templates
  are stricter, because their walks are invisible to the AST.
- ``input()`` is allowed (the human answers it); ``exit()`` and ``quit()`` are not, since
  they would shut the kernel down.
- Allowed magics must have literal arguments: IPython evaluates ``{expr}`` and ``$name`` in
  them. The code given to ``%time``, ``%timeit`` and ``%%capture`` is checked like a cell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.magics.execution import ExecutionMagics
from traitlets import Bool, List, Unicode
from traitlets.config import Configurable

from .walk import Rules, Violation, find_violations

__all__ = ["DEFAULT_ALLOWED_MAGICS", "DEFAULT_AUTHORIZED_IMPORTS", "DEFAULT_NETWORK_IMPORTS",
           "RULES", "Policy", "Verdict", "Violation"]

RULES: tuple[str, ...] = (
    "import", "shell", "magic", "ipython-api", "dangerous-builtin", "dunder",
    "tool-redefinition", "open-outside-workdir",
)

DEFAULT_AUTHORIZED_IMPORTS: tuple[str, ...] = (
    # standard library: computation, text, dates, data formats
    "abc", "array", "base64", "bisect", "calendar", "cmath", "collections", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions",
    "functools", "glob", "gzip", "hashlib", "heapq", "html", "io", "itertools", "json",
    "math", "numbers", "operator", "os.path", "pathlib", "pprint", "random", "re",
    "statistics", "string", "textwrap", "time", "typing", "unicodedata", "urllib.parse",
    "uuid", "warnings", "zipfile", "zoneinfo",
    # the data-science stack
    "IPython.display", "PIL", "dateutil", "matplotlib", "mpl_toolkits", "networkx", "numpy",
    "pandas", "plotly", "polars", "pyarrow", "pytz", "scipy", "seaborn", "sklearn",
    "statsmodels", "sympy", "tqdm",
)

# HTTP clients: importable when the sandbox has an egress allow-list, pointless otherwise.
DEFAULT_NETWORK_IMPORTS: tuple[str, ...] = ("httpx", "requests", "urllib", "urllib3")

DEFAULT_ALLOWED_MAGICS: tuple[str, ...] = (
    "time", "timeit", "capture", "matplotlib", "who", "whos", "who_ls", "pinfo", "pinfo2",
    "pdoc", "pdef", "precision", "pprint", "xmode", "lsmagic", "magic", "quickref",
    "markdown", "latex",
)

@dataclass
class Verdict:
    """The policy's answer for one cell."""

    allowed: bool
    violations: list[Violation] = field(default_factory=list)
    transformed: str = ""
    """The code after IPython's input transformations: what the policy actually checked."""

    @property
    def rules(self) -> list[str]:
        """The names of the rules broken, in order of first appearance."""
        return list(dict.fromkeys(v.rule for v in self.violations))

    @property
    def message(self) -> str:
        """Text for the model naming each rule broken and how to fix it ("" when allowed)."""
        if self.allowed:
            return ""
        lines = ["It breaks the kernel's policy:"]
        for v in self.violations:
            where = f"line {v.lineno} " if v.lineno is not None else ""
            lines.append(f"- {where}[{v.rule}] {v.message}")
        hints = dict.fromkeys(f"- [{v.rule}] {v.hint}" for v in self.violations if v.hint)
        if hints:
            lines += ["How to fix:", *hints]
        lines.append("Fix the code and send it again.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for trace metadata."""
        violations = [{"rule": v.rule, "message": v.message, "lineno": v.lineno}
                      for v in self.violations]
        return {"allowed": self.allowed, "violations": violations}


class Policy(Configurable):
    """Static checks applied to each cell of model-written code before it runs."""

    authorized_imports = List(
        Unicode(),
        help="""Modules the code may import, added to the data-science defaults
        (see include_default_imports). Submodules of a listed module are allowed too;
        "*" allows every import.""",
    ).tag(config=True)

    include_default_imports = Bool(
        True,
        help="Start the import allow-list from DEFAULT_AUTHORIZED_IMPORTS (numpy, pandas, "
        "matplotlib, math, json, ...). Turn off to allow only authorized_imports.",
    ).tag(config=True)

    network_imports = List(
        Unicode(),
        default_value=list(DEFAULT_NETWORK_IMPORTS),
        help="""HTTP client modules authorized when the kernel has network egress
        (SandboxConfig.allowed_domains is set). Raw sockets stay useless either way: the
        sandbox has no route, only the proxy.""",
    ).tag(config=True)

    egress = Bool(
        False,
        help="Whether the kernel checked has network egress. Set by the agent from its "
        "session (SandboxConfig.allowed_domains is the one setting); not configured here.",
    )

    allowed_magics = List(
        Unicode(),
        default_value=list(DEFAULT_ALLOWED_MAGICS),
        help="""IPython line and cell magics the code may use, without the % prefix.
        The code given to time, timeit, capture and prun is checked like the cell itself.
        Magics that reach a shell, files or the kernel's configuration (system, sx, bash,
        script, writefile, run, load, cd, env, pip, config, reset...) are left out.""",
    ).tag(config=True)

    block_open_outside_work = Bool(
        True,
        help="Reject open() on a path, known from the code itself, outside the work folder "
        "and open_allowed_dirs. Relative paths stay allowed unless they climb out with '..'.",
    ).tag(config=True)

    open_allowed_dirs = List(
        Unicode(),
        default_value=["/tmp"],
        help="Absolute folders that open() may use besides the work folder.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._transformer = TransformerManager()
        # IPython's own option parser, so the code we check is exactly the code %timeit runs
        self._exec_magics = ExecutionMagics(shell=None)

    def effective_imports(self) -> tuple[str, ...]:
        """Every module prefix that may be imported, sorted (``("*",)`` when all may be)."""
        base = DEFAULT_AUTHORIZED_IMPORTS if self.include_default_imports else ()
        names = set(base) | set(self.authorized_imports)
        if self.egress:
            names |= set(self.network_imports)
        return ("*",) if "*" in names else tuple(sorted(names, key=str.lower))

    def import_allowed(self, module: str) -> bool:
        """Whether ``module`` (dotted) is on the allow-list, itself or as a submodule."""
        allow = self.effective_imports()
        return allow == ("*",) or any(module == m or module.startswith(m + ".") for m in allow)

    def check(
        self, code: str, *, tool_names: Collection[str] = (), work_dir: str | None = None
    ) -> Verdict:
        """Check one cell of code as the kernel will see it.

        ``tool_names`` are the tools defined in the kernel (``final_answer`` is always one);
        ``work_dir`` is the kernel's working folder, for the open() rule.
        """
        protected = frozenset(tool_names) | {"final_answer"}
        transformed, found, _ = find_violations(code, self.rules(), protected, work_dir)
        violations = [dataclasses.replace(v, hint=self._hint(v.rule, work_dir)) for v in found]
        return Verdict(not violations, violations, transformed)

    def rules(self) -> Rules:
        """The settings as the walk reads them, with IPython's transformer and parser."""
        return Rules(
            import_allowed=self.import_allowed,
            allowed_magics=frozenset(self.allowed_magics),
            block_open_outside_work=self.block_open_outside_work,
            open_allowed_dirs=tuple(self.open_allowed_dirs),
            transform=self._transformer.transform_cell,
            parse_magic_options=self._exec_magics.parse_options,
        )

    def _hint(self, rule: str, work_dir: str | None) -> str:
        if rule == "import":
            allow = self.effective_imports()
            listed = "any module" if allow == ("*",) else ", ".join(allow)
            return (f"Authorized imports: {listed} (and their submodules). "
                    "Tools are already defined in the kernel: call them, do not import them.")
        if rule == "magic":
            magics = ", ".join("%" + m for m in self.allowed_magics) or "none"
            return f"Allowed magics: {magics}. Do everything else in plain Python."
        folder = f"the work folder ({work_dir})" if work_dir else "the work folder"
        dirs = " or ".join([folder, *self.open_allowed_dirs])
        return {
            "shell": "This kernel has no shell and cannot install packages. Use Python: "
            "pathlib or glob for files, pandas for data.",
            "ipython-api": "Write the code directly instead of going through get_ipython().",
            "dangerous-builtin": "Write the code directly; import authorized modules with "
            "import statements.",
            "dunder": "Interpreter internals are off limits. Ordinary dunders such as "
            "__init__, __name__, __class__, __dict__ and __len__ are fine.",
            "tool-redefinition": "Tools and final_answer are already defined in the kernel: "
            "call them with their documented arguments. Give your own helpers other names.",
            "open-outside-workdir": f"Use paths relative to the current folder, or under {dirs}.",
        }.get(rule, "")
