"""Talking CodeAct to the model: the system prompt and code extraction from replies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from string import Template

# Lean on purpose: small local models process prompts at ~90 tokens/s. The
# example is deliberately unlike a data task so small models do not copy it.
DEFAULT_SYSTEM_PROMPT = """\
You solve tasks by writing Python code that runs in a persistent IPython kernel.
Each reply: think in one or two sentences, then ONE ```python code block.
You will see the code's output (stdout, errors, results), then continue.
Variables, imports and functions persist between steps.

Finish by calling final_answer(value) in your code with the answer
(a number, string, dict, list or DataFrame). Do not print the answer and stop:
always call final_answer.

These tools are ALREADY DEFINED in the kernel. Call them like functions.
NEVER define, redefine or stub them:
$tools

Allowed imports: $imports
$variables
Example
Task: "How many vowels are in the longest word of 'the quick brown fox'?"
Reply:
The longest word is found with max(); then count its vowels.
```python
words = "the quick brown fox".split()
longest = max(words, key=len)
count = sum(ch in "aeiou" for ch in longest)
print(longest, count)
final_answer(count)
```
"""

NO_CODE_MESSAGE = (
    "Your reply contained no code block, so nothing ran. Reply with one ```python code "
    "block. When you know the answer, call final_answer(value) inside the code."
)

_FENCE_RE = re.compile(
    r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)(?:```|\Z)", re.DOTALL
)
_CODE_TAG_RE = re.compile(r"<code>(?P<body>.*?)(?:</code>|\Z)", re.DOTALL)
_PYTHON_LANGS = {"", "python", "py", "python3", "ipython", "ipython3", "pycon"}


def render_system_prompt(
    template: str,
    tool_docs: Sequence[str],
    imports: Sequence[str],
    variables: str = "",
) -> str:
    """Fill ``$tools``, ``$imports`` and ``$variables`` (string.Template syntax)."""
    tools_text = "\n\n".join(tool_docs) if tool_docs else "(no tools besides final_answer)"
    variables_text = f"\nVariables already alive in the kernel:\n{variables}\n" if variables else ""
    return Template(template).safe_substitute(
        tools=tools_text,
        imports=", ".join(imports) if imports else "any",
        variables=variables_text,
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
