"""The statements the host fills in for each kernel, as ``string.Template`` s.

Every ``$field`` is filled with a literal (a ``repr``), a name checked as an identifier,
or a signature rendered from the Python types of a host function: never with text from
the model or the kernel. Used by codeact_kernel.tools (stubs), .trace (replay stubs),
.agent (kept outputs, the step probe) and .kernels (the working-folder probe).
"""

from string import Template

# A tool in the kernel: the host function's name, signature and docstring; the body asks
# the host. The exception is raised here, in the stub, so the kernel's traceback ends at
# the tool call instead of inside the RPC client.
TOOL_STUB = Template('''\
def $header:
    $doc
    __tracebackhide__ = True
    _codeact_ok, _codeact_value = _codeact_rpc.$call
    if _codeact_ok:
        return _codeact_value
    raise _codeact_value
''')
# The RPC request of a tool stub: positional names, then a dict of keyword names.
TOOL_CALL = Template("call($name, ($positional), {$named})")
# A stub's default value that is not a literal: the kernel shows the host's repr and the
# host applies the real default.
HOST_DEFAULT = Template("_codeact_rpc.HostDefault($text)")
# A replayed trace's tools (replay_setup.py serves their recorded results): the tool
# namespaces and search of toolspace.py as the module _codeact_space, a stub per tool with
# its recorded signature and doc, and each stub in its namespace or the catalog.
REPLAY_TOOLSPACE = Template(
    "import types as _codeact_types\n"
    "_codeact_space = _codeact_types.ModuleType('_codeact_toolspace')\n"
    "exec(compile($source, '<codeact toolspace>', 'exec'), _codeact_space.__dict__)\n"
    "search_tools = _codeact_space.search_tools\n"
)
REPLAY_STUB = Template('''\
def $stub$parameters:
    $doc
    return _codeact_replay_call($name, dict(locals()))
''')
REPLAY_NAMESPACE = Template("$space = _codeact_space.make_namespace($name, $doc)\n")
REPLAY_IN_NAMESPACE = Template("_codeact_space.add_to_namespace($space, $attr, $stub)\n")
REPLAY_IN_CATALOG = Template("_codeact_space.TOOL_CATALOG[$name] = $stub\n")
# The whole text of a step whose output the model saw cut (see inspect_vars.py).
KEEP_OUTPUT = Template("_outputs[$key] = $text")
# Clears every user variable (the session then runs its startup code again).
RESET = "%reset -f"
# Read through user_expressions: the kernel's working folder, as the kernel sees it.
CWD_EXPRESSION = "__import__('os').getcwd()"
# The probe (probe.py, installed as the module $module): the end-of-step barrier, run as
# a silent execute, and the variables summary, read through user_expressions.
PROBE_END_STEP = Template("__import__('sys').modules[$module].end_step()")
PROBE_REPORT = Template("__import__('sys').modules[$module].report()")
# Read through user_expressions: the table formats the kernel reads (handoff.py).
HANDOFF_FORMATS = "_codeact_handoff_formats()"
# A value handed to the kernel under a name checked as an identifier.
ASSIGN = Template("$name = $value")
