"""Talking CodeAct to the model: the system prompt and code extraction from replies."""

from __future__ import annotations

import re
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


_FENCE_RE = re.compile(
    r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)(?:```|\Z)", re.DOTALL
)
_CODE_TAG_RE = re.compile(r"<code>(?P<body>.*?)(?:</code>|\Z)", re.DOTALL)
# A whole first block: an opening fence line, then a closing fence at the start of a line.
_CLOSED_BLOCK_RE = re.compile(r"```[^\n]*\n.*?^[ \t]*```|<code>.*?</code>",
                              re.DOTALL | re.MULTILINE)
_PYTHON_LANGS = {"", "python", "py", "python3", "ipython", "ipython3", "pycon"}


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


def extract_code(reply: str) -> str | None:
    """The code of a model reply, or None when it has none.

    Accepts ```python fences, bare ``` fences and <code>...</code>; several
    blocks are joined in order and run as one step. Lenient where small models
    slip: a missing closing fence takes the rest of the reply, and a closing
    fence without an opening one takes the lines before it that look like code.
    """
    blocks = [
        m.group("body")
        for m in _FENCE_RE.finditer(reply)
        if m.group("lang").lower() in _PYTHON_LANGS and m.group("body").strip()
    ]
    if not blocks:
        blocks = [m.group("body") for m in _CODE_TAG_RE.finditer(reply) if m.group("body").strip()]
    if not blocks and "```" in reply:
        blocks = [_before_lonely_fence(reply)]
    blocks = [_dedent_block(b) for b in blocks if b and b.strip()]
    return "\n\n".join(blocks) if blocks else None


def first_block_end(text: str) -> int | None:
    """Where the first complete code block of ``text`` ends, or None while none is closed.

    A stop string cannot say this: ``\n```\n`` also ends a reply at a bare *opening*
    fence, leaving prose with no code.
    """
    match = _CLOSED_BLOCK_RE.search(text)
    return match.end() if match else None


def strip_code(reply: str) -> str:
    """The prose of a reply, with its code blocks removed (for the trace's markdown)."""
    text = _FENCE_RE.sub("", reply)
    text = _CODE_TAG_RE.sub("", text)
    return text.strip()


def _before_lonely_fence(reply: str) -> str:
    head = reply.split("```", 1)[0]
    lines = head.rstrip().splitlines()
    # Walk back from the fence while lines look like code, so leading prose is left out.
    start = len(lines)
    while start > 0 and _looks_like_code(lines[start - 1]):
        start -= 1
    return "\n".join(lines[start:])


def _looks_like_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return True
    if line.startswith((" ", "\t", "#")):
        return True
    return bool(re.match(r"^[\w.\[\]'\"]+\s*(=|\(|\+=|-=)|^(import|from|for|if|while|def|"
                         r"class|return|print|with|try|except|else|elif)\b", stripped))


def _dedent_block(block: str) -> str:
    import textwrap

    return textwrap.dedent(block).strip("\n")
