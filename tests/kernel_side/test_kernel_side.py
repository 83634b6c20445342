"""The folder a reviewer audits: what it holds, and how the host fills it in."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from codeact_kernel import kernel_side
from codeact_kernel.kernel_side import call, source, templates

SHIPPED = sorted(p.name for p in Path(kernel_side.__file__).parent.glob("*.py")
                 if p.name not in ("__init__.py", "templates.py"))


def test_call_writes_literal_arguments_and_refuses_anything_else() -> None:
    text = call("_codeact_handoff", "json", "inline", "e30=", True, None, {"a": [1, 2.5]})
    assert text == "_codeact_handoff('json', 'inline', 'e30=', True, None, {'a': [1, 2.5]})\n"
    assert ast.parse(text).body[0].value.args[0].value == "json"  # type: ignore[attr-defined]

    class Sneaky(str):
        def __repr__(self) -> str:
            return "__import__('os').system('id')"

    with pytest.raises(ValueError, match="literal"):
        call("f", Sneaky("x"))
    with pytest.raises(ValueError, match="literal"):
        call("f", float("nan"))
    with pytest.raises(ValueError, match="not a function name"):
        call("f(); g", 1)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_compile_and_import_only_the_standard_library_at_the_top(
        name: str) -> None:
    # They run inside the kernel before anything else is known to be there; numpy, pandas,
    # pyarrow and zmq are imported where they are used.
    tree = ast.parse(source(name))
    compile(tree, name, "exec")
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in top if isinstance(n, ast.ImportFrom) and not n.level]
    allowed = set(sys.stdlib_module_names) | {"__future__", "zmq"}  # ipykernel brings zmq
    assert [m for m in modules if m.split(".")[0] not in allowed] == []


def test_templates_fill_in_to_code_that_compiles() -> None:
    stub = templates.TOOL_STUB.substitute(
        header="lookup(key: 'str') -> 'int'", doc=repr("Look it up."),
        call=templates.TOOL_CALL.substitute(name=repr("lookup"), positional="",
                                            named="'key': key"))
    replay = templates.REPLAY_STUB.substitute(stub="lookup", parameters="(key: 'str') -> 'int'",
                                              doc=repr("Look it up."), name=repr("lookup"))
    space = (templates.REPLAY_TOOLSPACE.substitute(source=repr("x = 1"))
             + templates.REPLAY_NAMESPACE.substitute(space="files", name=repr("files"),
                                                     doc=repr("Files."))
             + templates.REPLAY_IN_NAMESPACE.substitute(space="files", attr=repr("read"),
                                                        stub="files__read")
             + templates.REPLAY_IN_CATALOG.substitute(name=repr("lookup"), stub="lookup"))
    for code in (stub, replay, space, templates.KEEP_OUTPUT.substitute(key=3, text=repr("x")),
                 templates.ASSIGN.substitute(name="df", value=call("f", 1)),
                 templates.HOST_DEFAULT.substitute(text=repr("<object>")),
                 templates.CWD_EXPRESSION, templates.RESET,
                 templates.PROBE_REPORT.substitute(module=repr("_p")),
                 templates.PROBE_END_STEP.substitute(module=repr("_p")),
                 templates.HANDOFF_FORMATS):
        # As the kernel compiles a cell: after IPython's input transformations.
        compile(TransformerManager().transform_cell(code), "<template>", "exec")
    assert "_codeact_rpc.call('lookup', (), {'key': key})" in stub
