"""The walk on its own: a cell checked against plain Rules, with no Policy object."""

from __future__ import annotations

from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.magics.execution import ExecutionMagics

from codeact_kernel.policy import Policy
from codeact_kernel.policy.walk import Rules, Violation, find_violations


def plain_rules(**overrides: object) -> Rules:
    settings: dict[str, object] = {
        "import_allowed": lambda module: module.split(".")[0] == "math",
        "allowed_magics": {"time"},
        "block_open_outside_work": True,
        "open_allowed_dirs": ("/tmp",),
        "transform": TransformerManager().transform_cell,
        "parse_magic_options": ExecutionMagics(shell=None).parse_options,
        **overrides,
    }
    return Rules(**settings)  # type: ignore[arg-type]


def test_rules_decide_and_violations_carry_no_hints() -> None:
    code = "import math\nimport json\n%time import os\nopen('/etc/passwd')\n!ls"
    transformed, found, parsed = find_violations(code, plain_rules(), frozenset(), "/work")
    assert parsed and "get_ipython().run_line_magic('time'" in transformed
    assert [(v.rule, v.lineno) for v in found] == [
        ("import", 2), ("import", 3), ("open-outside-workdir", 4), ("shell", 5)]
    assert all(v.hint == "" for v in found)  # hints are the Policy's business
    allow_all = plain_rules(import_allowed=lambda module: True, block_open_outside_work=False)
    _, found, _ = find_violations(code, allow_all, frozenset(), "/work")
    assert [v.rule for v in found] == ["shell"]


def test_protected_names_and_nested_magic_code() -> None:
    code = "def final_answer(x):\n    pass\n%time final_answer = 1"
    _, found, _ = find_violations(code, plain_rules(), frozenset({"final_answer"}), None)
    assert found == [Violation("tool-redefinition", found[0].message, 1),
                     Violation("tool-redefinition", found[1].message, 3)]


def test_the_policy_adds_hints_to_what_the_walk_finds() -> None:
    policy = Policy()
    code = "import socket\nexec('1')"
    _, found, _ = find_violations(code, policy.rules(), frozenset({"final_answer"}), None)
    verdict = policy.check(code)
    assert [(v.rule, v.message, v.lineno) for v in verdict.violations] == [
        (v.rule, v.message, v.lineno) for v in found]
    assert all(v.hint for v in verdict.violations)
