"""What the model is told about a step, separate from what the auditor keeps.

The model view is short: streams, the error with its full traceback, the
text/plain of results, a note per image (and the image itself for vision
models), and a summary of live variables, truncated head+tail when long.
The auditor view is the ExecutionResult's outputs, kept whole in the trace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..kernels.execution import ExecutionResult, strip_ansi

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass
class Observation:
    """The model's view of one step."""

    text: str
    images: list[tuple[str, str]] = field(default_factory=list)  # (mime, base64)
    truncated: bool = False
    full_length: int = 0
    full_text: str = ""  # the whole text, when the view was cut (the kernel keeps it)

    def message(self, vision: bool) -> dict[str, Any]:
        """A litellm user message; images are attached only for vision models."""
        if not (vision and self.images):
            return {"role": "user", "content": self.text}
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}]
        for mime, data in self.images:
            parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
        return {"role": "user", "content": parts}


def format_variables(rows: list[dict[str, str]]) -> str:
    return "\n".join(
        f"- {r.get('name')}: {r.get('type')}" + (f" = {r['summary']}" if r.get("summary") else "")
        for r in rows
    )


def model_view(
    result: ExecutionResult,
    step: int,
    variables: list[dict[str, str]],
    max_chars: int,
    max_kept_chars: int | None = None,
) -> Observation:
    """Build the model's view; when it is cut, ``full_text`` holds the whole of it (itself
    cut to ``max_kept_chars``: it goes back to the kernel as ``_outputs[step]``)."""
    images: list[tuple[str, str]] = []
    full_text = observed_text(result, images, max_kept_chars)
    truncated = len(full_text) > max_chars
    body = truncate_middle(full_text, max_chars, step) if truncated else full_text
    text = f"Step {step} output:\n{body}"
    if variables:
        text += "\n\nVariables in the kernel:\n" + format_variables(variables)
    return Observation(text, images, truncated, len(full_text), full_text if truncated else "")


def observed_text(
    result: ExecutionResult, images: list[tuple[str, str]] | None = None,
    limit: int | None = None,
) -> str:
    """The text of a step's outputs as the model reads it, before the view's cut, at most
    ``limit`` characters (head and tail); images are noted in the text and collected
    into ``images``."""
    parts: list[str] = []
    images = [] if images is None else images
    for output in result.outputs:
        kind = output.output_type
        if kind == "stream":
            parts.append(output.text if output.name == "stdout" else f"[stderr]\n{output.text}")
        elif kind == "error":
            parts.append("Error:\n" + "\n".join(strip_ansi(t) for t in output.traceback))
        elif kind in ("execute_result", "display_data"):
            parts.append(_rich_text(output.data, kind, images))
    if (result.reason and (result.recovery != "none" or result.notes)) or result.kernel_died:
        parts.append(f"[{result.reason}]")
    text = "\n".join(p.rstrip("\n") for p in parts if p) or "(no output)"
    return text if limit is None or len(text) <= limit else _cut_kept(text, limit)


def _cut_kept(text: str, limit: int) -> str:
    head = limit * 2 // 3
    tail = limit - head
    return (f"{text[:head]}\n\n[... {len(text) - limit:,} characters of this step's output "
            f"are not kept (Agent.max_kept_output_chars) ...]\n\n{text[-tail:]}")


def failure_note(
    first_failure: int | None, result: ExecutionResult, tools: Sequence[str] = ()
) -> str:
    """Appended to the view of a step that failed; ``first_failure`` is the earlier step
    that already failed with the same code, if any.

    It ends with what to do next: small models otherwise answer an error with a plan and
    no code, which costs a step. A NameError with tools at hand names them: small models
    assume the task's data already sits in a variable instead of fetching it.
    """
    repeat = "" if first_failure is None else (
        f"This is the same code as step {first_failure}, and it failed again: sending it "
        "once more cannot work. Change it. If a value is not what you expected, print it "
        "(its type, and its first item for a list) before using it.\n"
    )
    return f"\n\n{_error_hint(result, tools)}{repeat}Reply with one sentence and a ```python " \
        "block that fixes the error."


_WRONG_TYPE_RE = re.compile(r"'(list|dict|tuple|str|int|float)' object has no attribute '(\w+)'")


def _error_hint(result: ExecutionResult, tools: Sequence[str]) -> str:
    """What small models get wrong behind the two commonest errors, as one hint line."""
    error = result.error
    if error is None:
        return ""
    if error.ename == "NameError" and tools:
        names = ", ".join(f"{name}()" for name in tools)
        return (f"Only what your code assigned exists. Data you do not have yet comes from "
                f"calling {names}.\n")
    wrong = _WRONG_TYPE_RE.search(error.evalue) if error.ename == "AttributeError" else None
    if wrong is None:
        return ""
    kind, attribute = wrong.groups()
    records = " A list of dicts becomes a table with pd.DataFrame(value)." if kind == "list" \
        else ""
    return (f"The value is a plain {kind}, which has no .{attribute}: use what a {kind} has "
            f"(see its value under Variables).{records} Do not call .{attribute} on it again.\n")


def _rich_text(data: dict[str, Any], kind: str, images: list[tuple[str, str]]) -> str:
    lines: list[str] = []
    for mime in IMAGE_TYPES:
        if mime in data:
            payload = data[mime]
            images.append((mime, payload if isinstance(payload, str) else "".join(payload)))
            lines.append(f"[{kind}: an image ({mime}) was displayed]")
            break
    plain = data.get("text/plain")
    if plain and not lines:
        text = plain if isinstance(plain, str) else "".join(plain)
        lines.append(f"Out: {text}" if kind == "execute_result" else text)
    elif not lines:
        lines.append(f"[{kind}: {', '.join(sorted(data))}]")
    return "\n".join(lines)


def truncate_middle(text: str, limit: int, step: int) -> str:
    """Keep the head and the tail; say how much was cut and where the rest is."""
    head = limit * 2 // 3
    tail = limit - head
    omitted = len(text) - head - tail
    note = (
        f"\n\n[... {omitted:,} characters omitted. The full output of this step is the string "
        f"_outputs[{step}] in the kernel: print slices of it, e.g. "
        f"print(_outputs[{step}][{head}:{head + 2000}]), or search it with str methods ...]\n\n"
    )
    return text[:head] + note + text[-tail:]
