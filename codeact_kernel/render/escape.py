"""Text from the sandbox made inert for the two places it is printed: terminals and Markdown.

Both are interpreters. A terminal obeys control sequences (OSC 52 writes the clipboard,
CSI 2J clears the screen, C1 bytes act as ESC on some terminals, bidi overrides reorder
what the reader sees); Markdown turns ``[x](javascript:...)`` into a link and passes raw
HTML through. Whatever the kernel or the model wrote goes through one of these first.
"""

from __future__ import annotations

import html
import re

# Every C0 control but newline and tab, DEL, every C1 control, and the bidi controls.
_CONTROLS = [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0),
             *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_TERMINAL = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROLS}
# Select Graphic Rendition (colours, bold) only: harmless, and tracebacks use it.
_SGR = re.compile(r"\x1b\[[0-9;]{0,32}m")
# Markdown's backslash escapes cover its punctuation; <, > and & become entities.
_MARKDOWN_PUNCTUATION = "\\`*_{}[]()#+-.!|~"


def escape_terminal(text: str, keep_colors: bool = False) -> str:
    """Show control characters as visible escapes (``\\x1b``); newline and tab pass, and
    with ``keep_colors`` so do colour sequences (ESC [ digits m), which only paint."""
    if not keep_colors:
        return text.translate(_TERMINAL)
    pieces = _SGR.split(text)
    colors = _SGR.findall(text)
    out = [pieces[0].translate(_TERMINAL)]
    for color, piece in zip(colors, pieces[1:], strict=True):
        out += [color, piece.translate(_TERMINAL)]
    return "".join(out)


def escape_markdown(text: str) -> str:
    """Text that Markdown renders as exactly this text: no markup, no HTML, no links."""
    marked = "".join("\\" + ch if ch in _MARKDOWN_PUNCTUATION else ch
                     for ch in escape_terminal(text))
    # After the backslashes: the entities' own '#' must not be escaped.
    return html.escape(marked, quote=False)


def markdown_code(code: str, language: str = "python") -> str:
    """A fenced code block that shows ``code`` as it is: the fence is longer than any run
    of backticks inside, so the code cannot close it and have the rest rendered."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{escape_terminal(code)}\n{fence}"
