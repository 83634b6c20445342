"""Talking CodeAct to the model: the system prompt and the notes sent back to it."""

from __future__ import annotations

from collections.abc import Sequence
from string import Template

# Tuned on the embedded 1.5B model with benchmarks/bench_local_model.py (its docstring has
# the numbers): keep it lean (prompt processing runs at ~90 tokens/s there). The
# example calls a made-up function, so it teaches "call, don't define" without resembling
# a likely task; variants whose example started with an import made the model write
# `import requests` and stub the tools, and a two-step example was copied verbatim.
# The tools come last: what precedes them is the same from task to task (while the kernel
# holds no variables yet), so a server that caches the longest common prompt prefix
# (llama.cpp does) reads only the tools and the task anew. On the unseen tasks' tuning
# half the median first step's model time went from 21.9 s to 9.0 s, and the held-out
# half passed 11 of 24 tasks against 9 with the tools listed before the rules and the
# example (README, issue 14).
DEFAULT_SYSTEM_PROMPT = """\
You solve tasks by writing Python code that runs in a persistent IPython kernel.
Each reply: one short sentence of plan, then ONE ```python code block. Stop after it:
you will then see the code's output (prints, errors), and can continue.
Variables and imports persist between steps. If your code fails, fix the error:
never send the same code twice.

When you have the answer, pass it to final_answer(value) inside your code (a number,
string, list, dict or DataFrame).
$preimported
Allowed imports: $imports
$variables
Example, with a function colour_of(fruit) -> str:
Task: "Which of banana and cherry is red?"
Reply:
I call colour_of for each fruit and keep the red one.
```python
colours = {fruit: colour_of(fruit) for fruit in ["banana", "cherry"]}
print(colours)
red = [fruit for fruit, colour in colours.items() if colour == "red"]
final_answer(red[0])
```

The functions of your task already exist in the kernel. Call them directly; NEVER write
`def` for them and never invent their data. Use them to get the facts you need:
$tools
"""

# action_format "json": the tools travel as function specs, so the prompt does not list them.
DEFAULT_JSON_PROMPT = """\
You solve tasks by calling the functions (tools) you are given. Each reply: one short
sentence of plan, then one or more function calls. You will then see their results, and
can continue. Use the tools to get the facts you need; never invent their data. If a
call fails, read the error and fix the call: never send the same call twice.
When you have the answer, call final_answer with it (a number, string, list or object).
$variables"""

# action_format "auto": either kind of action, each where it serves best.
DEFAULT_AUTO_PROMPT = """\
You solve tasks with tools. Each reply does ONE of two things:
- call the functions (tools) directly, for one or a few lookups; or
- write ONE ```python code block, run in a persistent IPython kernel where the same
  functions exist, when you need loops, filtering or arithmetic over the results.
You then see the results (or the code's output) and can continue. Never invent the tools'
data. When you have the answer, call final_answer(value), as a function or in code.

The functions, as the code calls them:
$tools

Allowed imports in code: $imports
$variables"""

NO_CALL_MESSAGE = (
    "Your reply called no function, so nothing ran. Call the tools you need; when you "
    "know the answer, call final_answer with it."
)

CODE_NOT_RUN_MESSAGE = (
    "Your reply both called functions and held a code block: the calls ran, the code did "
    "NOT. Do one or the other in a reply."
)

# What kernel_side/preimports.py imports, as the prompt says it.
PREIMPORTED = ("Already imported, use them without an import: np (numpy), pd (pandas), "
               "math, statistics, json, re, collections.")

NO_CODE_MESSAGE = (
    "Your reply contained no code block, so nothing ran. Reply with one ```python code "
    "block. When you know the answer, call final_answer(value) inside the code."
)

LAST_CALL_MESSAGE = (
    "The run's {budget} has run out: this is your last reply. Do not start new work. "
    "Call final_answer() now with your best answer to the task, from what the earlier "
    "steps found.{variables}"
)


def last_call_message(budget: str, variables: str) -> str:
    """The last call's request for an answer; ``variables`` as the system prompt lists them."""
    listed = f" The kernel still holds these variables:\n{variables}" if variables else ""
    return LAST_CALL_MESSAGE.format(budget=budget, variables=listed)


def render_system_prompt(
    template: str,
    tool_docs: Sequence[str],
    imports: Sequence[str],
    variables: str = "",
    preimported: str = "",
) -> str:
    """Fill ``$tools``, ``$imports``, ``$variables`` and ``$preimported`` (string.Template
    syntax)."""
    tools_text = "\n\n".join(tool_docs) if tool_docs else "(no tools besides final_answer)"
    variables_text = f"\nVariables already alive in the kernel:\n{variables}\n" if variables else ""
    return Template(template).safe_substitute(
        tools=tools_text,
        imports=", ".join(imports) if imports else "any",
        variables=variables_text,
        preimported=preimported,
    )
