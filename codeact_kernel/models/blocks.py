"""Code blocks in a model's reply: the code to run, the prose around it, and where the
first block ends (a stream is cut there, before the model imagines the code's output)."""

from __future__ import annotations

import re

_FENCE_RE = re.compile(
    r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)(?:```|\Z)", re.DOTALL
)
_CODE_TAG_RE = re.compile(r"<code>(?P<body>.*?)(?:</code>|\Z)", re.DOTALL)
# A whole first block: an opening fence line, then a closing fence at the start of a line.
_CLOSED_BLOCK_RE = re.compile(r"```[^\n]*\n.*?^[ \t]*```|<code>.*?</code>",
                              re.DOTALL | re.MULTILINE)
_PYTHON_LANGS = {"", "python", "py", "python3", "ipython", "ipython3", "pycon"}


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
