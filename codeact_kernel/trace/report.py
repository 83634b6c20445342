"""Reading a trace as a reviewer: a terminal summary (`codeact show`) and HTML export.

A trace holds what the sandbox and the model wrote, so both readers treat it as hostile:
the summary escapes control characters for the terminal and follows sub-agent links only
inside the trace's folder, once each; the export filters outputs through the output
firewall, sanitizes the rendered Markdown, drops raw cells, uses a template without
JavaScript, and forbids script in the page with a Content-Security-Policy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from ..errors import CodeActError
from ..render.escape import escape_terminal
from ..render.firewall import OutputFirewall
from ..tools.approval import safe_text
from .actions import is_call_cell
from .notebook import BLOCKED_TAG, SETUP_TAG, load_trace

# No script from anywhere; inline images and the template's own inline styles only.
EXPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
              "base-uri 'none'; form-action 'none'")
# The lab template less every script it would load (require.js, MathJax, mermaid, the
# widget manager), with the policy as the first element of <head>.
_EXPORT_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head -%}
<meta http-equiv="Content-Security-Policy" content="CSP">
{{ super() }}
{%- endblock html_head -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block footer_js -%}{%- endblock footer_js -%}
{%- block data_javascript scoped -%}{%- endblock data_javascript -%}
{%- block data_widget_view scoped -%}{%- endblock data_widget_view -%}
""".replace("CSP", EXPORT_CSP)
# Sub-agent traces nest; past this depth a link is named, not followed.
MAX_CHILD_DEPTH = 8


def _fmt_call(call: dict[str, Any], width: int = 90) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in (call.get("arguments") or {}).items())
    outcome = f"raised {call['error']}" if call.get("error") else f"-> {call.get('result')}"
    text = f"{call.get('name')}({args}) {outcome} [{call.get('duration', 0) * 1000:.1f} ms]"
    return text if len(text) <= width else text[: width - 3] + "..."


def _invalid_actions(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """A step's function calls that were never made (the made ones are its tool calls)."""
    actions = meta.get("actions")
    if not isinstance(actions, list):
        return []
    return [a for a in actions if isinstance(a, dict) and a.get("source") is None]


def _fmt_action(action: dict[str, Any], width: int = 110) -> str:
    """A function call the model sent that could not be made: what, and why not."""
    text = (f"{action.get('name')}({str(action.get('arguments'))[:80]}) NOT MADE: "
            f"{action.get('error')}").replace("`", "'").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt_decision(d: dict[str, Any], width: int = 160) -> str:
    """One approval decision: what, the decision, by whom, when, and why."""
    args = d.get("arguments")
    inner = ", ".join(f"{k}={v!r}" for k, v in args.items()) if isinstance(args, dict) else ""
    call = f"{d.get('tool')}({inner})" if args is not None else str(d.get("tool"))
    waited = f" after {d['waited']:.1f}s" if d.get("by") == "human" and d.get("waited") else ""
    reason = f": {d['reason']}" if d.get("reason") else ""
    text = f"{call} {d.get('decision')} by {d.get('by')} at {d.get('at')}{waited}{reason}"
    return safe_text(text if len(text) <= width else text[: width - 3] + "...")


def _fmt_egress(record: dict[str, Any], width: int = 110) -> str:
    """One request through the egress proxy, as ``codeact show`` lists it."""
    verdict = "allowed" if record.get("allowed") else "DENIED"
    status = f" {record['status']}" if record.get("status") else ""
    text = (f"{record.get('method') or '?'} {record.get('host')}:{record.get('port')} "
            f"{verdict}{status} [{record.get('rule')}]")
    if record.get("allowed"):
        text += f" up {record.get('bytes_up', 0)} B, down {record.get('bytes_down', 0)} B"
        text += " (still open)" if record.get("open") else ""
        text += " (an earlier step's connection)" if record.get("continued") else ""
    if record.get("error"):
        text += f": {record['error']}"
    # Traces are files anyone may hand you: no control character reaches the terminal.
    text = escape_terminal(text).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def step_cells(nb: NotebookNode) -> list[NotebookNode]:
    """The cells that carry a step's record: executed code, blocked code, and the model's
    reply for a step that had no code or that the run's time limit cut."""
    return [c for c in nb.cells if _is_step(c)]


def _is_step(cell: NotebookNode) -> bool:
    meta = cell.metadata.get("codeact", {})
    if "step" not in meta or SETUP_TAG in cell.metadata.get("tags", []) or is_call_cell(cell):
        return False
    return cell.cell_type in ("code", "raw") or meta.get("status") in ("no-code", "cut") \
        or bool(meta.get("actions"))


def show_lines(nb: NotebookNode, indent: str = "", base: Path | None = None,
               seen: set[Path] | None = None) -> list[str]:
    """The readable summary of one trace (and of the sub-agent traces it links).

    ``seen`` holds the traces already shown, so a link cycle ends; control characters are
    left to the caller, which escapes for where the text goes.
    """
    seen = set() if seen is None else seen
    meta = nb.metadata["codeact"]
    totals = meta.get("totals") or {}
    lines = [
        f"{indent}Task:   {meta.get('task')}",
        f"{indent}Model:  {meta.get('model')}   status: {meta.get('status')}",
        f"{indent}Totals: {totals.get('steps', '?')} steps, tokens "
        f"{totals.get('prompt_tokens', 0)}+{totals.get('completion_tokens', 0)}, "
        f"cost ${totals.get('cost') or 0:.4f}, {totals.get('duration', 0):.1f}s",
    ]
    for cell in step_cells(nb):
        lines.extend(_step_lines(cell, indent, base, seen))
    answer = meta.get("final_answer")
    if answer is not None:
        text = answer.get("preview") if isinstance(answer, dict) and "preview" in answer else (
            json.dumps(answer, default=str))
        lines.append(f"{indent}Final answer: {str(text)[:500]}")
    if meta.get("status") != "answered" and totals.get("reason"):
        lines.append(f"{indent}Reason: {totals['reason']}")
    return lines


def _step_lines(cell: NotebookNode, indent: str, base: Path | None,
                seen: set[Path]) -> list[str]:
    m = cell.metadata["codeact"]
    blocked = BLOCKED_TAG in cell.metadata.get("tags", [])
    status = "BLOCKED" if blocked else m.get("status", "")
    if m.get("actions"):
        count = len(m["actions"])
        status = f"{status} ({count} function call{'s' if count != 1 else ''})"
    lines = [
        f"{indent}  step {m.get('step')}: {status:<8} llm {m.get('llm_duration', 0):.2f}s  "
        f"exec {m.get('exec_duration', 0):.3f}s  tokens {m.get('prompt_tokens', 0)}+"
        f"{m.get('completion_tokens', 0)}"
    ]
    if blocked:
        for v in m.get("policy", {}).get("violations", []):
            lines.append(f"{indent}      policy [{v.get('rule')}] {v.get('message')}")
    if m.get("reason") and m.get("recovery", "none") != "none":
        lines.append(f"{indent}      {m['reason']}")
    for decision in m.get("approvals", []):
        lines.append(f"{indent}      approval {_fmt_decision(decision)}")
    for action in _invalid_actions(m):
        lines.append(f"{indent}      call {_fmt_action(action)}")
    for call in m.get("tool_calls", []):
        lines.append(f"{indent}      tool {_fmt_call(call)}")
        child = call.get("trace")
        if child and base is not None:
            lines.extend(_child_lines(base, str(child), indent + "        ", seen))
    for record in m.get("egress", []):
        lines.append(f"{indent}      egress {_fmt_egress(record)}")
    return lines


def _child_lines(base: Path, link: str, indent: str, seen: set[Path]) -> list[str]:
    # The link is the trace's word: follow it only to a file inside the trace's own
    # folder (where sub-agent traces are written), once, and not too deep.
    path = (base / link).resolve()
    if not path.is_relative_to(base.resolve()) or Path(link).is_absolute():
        return [f"{indent}(sub-agent trace {link!r} is outside the trace's folder: "
                "not followed)"]
    if path in seen:
        return [f"{indent}(sub-agent trace {path.name}: already shown above)"]
    if len(indent) > 8 * MAX_CHILD_DEPTH:
        return [f"{indent}(sub-agent trace {path.name}: nested too deeply, not followed)"]
    seen.add(path)
    try:
        child = load_trace(path)
    except CodeActError as exc:
        return [f"{indent}(sub-agent trace unreadable: {exc})"]
    return [f"{indent}sub-agent trace {path.name}:",
            *show_lines(child, indent, path.parent, seen)]


def show(path: str | Path) -> str:
    """The terminal summary of a trace, every control character escaped."""
    nb = load_trace(path)
    seen = {Path(path).resolve()}
    return escape_terminal("\n".join(show_lines(nb, base=Path(path).parent, seen=seen)))


def annotated_copy(nb: NotebookNode) -> NotebookNode:
    """A copy for reading (HTML): each step's metadata in a markdown cell above its code,
    and the replay setup at the end, where it does not stand between the task and the
    steps (the copy is read, never run)."""
    out = copy.deepcopy(nb)
    cells: list[NotebookNode] = []
    setup: list[NotebookNode] = []
    for cell in out.cells:
        if SETUP_TAG in cell.metadata.get("tags", []):
            cell.metadata.pop("jupyter", None)
            setup += [new_markdown_cell(SETUP_NOTE), cell]
            continue
        if _is_step(cell):
            cells.append(new_markdown_cell(_step_markdown(cell)))
        cells.append(cell)
    out.cells = cells + setup
    return out


SETUP_NOTE = (
    "### Replay setup\n\nThe notebook's first code cell (collapsed in JupyterLab): it "
    "serves the tool results recorded in this trace, so that Run All and `codeact replay` "
    "re-run the steps without the tools, the model or a network."
)


def _step_markdown(cell: NotebookNode) -> str:
    m = cell.metadata["codeact"]
    rows = [
        f"**Step {m.get('step')}** · status `{m.get('status')}` · model `{m.get('model')}`",
        f"tokens {m.get('prompt_tokens', 0)} prompt + {m.get('completion_tokens', 0)} completion"
        f" · cost ${m.get('cost') or 0:.5f} · LLM {m.get('llm_duration', 0):.2f}s"
        f" · execution {m.get('exec_duration', 0):.3f}s",
    ]
    verdict = m.get("policy", {})
    if not verdict.get("allowed", True):
        rows.append("policy: **blocked** — " + "; ".join(
            f"[{v.get('rule')}] {v.get('message')}" for v in verdict.get("violations", [])))
    for decision in m.get("approvals", []):
        rows.append(f"approval: `{_fmt_decision(decision, 300)}`")
    for action in _invalid_actions(m):
        rows.append(f"function call: `{_fmt_action(action, 300)}`")
    for call in m.get("tool_calls", []):
        rows.append(f"tool call: `{_fmt_call(call, 200)}`")
    for record in m.get("egress", []):
        text = _fmt_egress(record, 300).replace("`", "'")  # stays one code span
        rows.append(f"egress: `{text}`")
    if cell.cell_type == "raw":
        # nbconvert drops raw cells from HTML, and blocked code must stay visible.
        rows.append(f"blocked code (not run):\n\n```python\n{cell.source}\n```")
    return "\n\n".join(rows)


def export_html(path: str | Path, output: str | Path | None = None,
                firewall: OutputFirewall | None = None) -> Path:
    """Write the trace as HTML with per-step metadata visible; returns the file written.

    The page runs nothing from the trace: outputs pass the firewall (``trusted`` is
    ignored: a page has no one to ask), Markdown is sanitized after rendering, raw cells
    are left out, and the CSP forbids script whatever slipped through.
    """
    firewall = firewall or OutputFirewall()
    if firewall.trusted:
        firewall = OutputFirewall(allowed_mime_types=firewall.allowed_mime_types)
    exporter = _review_exporter(firewall)
    nb = annotated_copy(load_trace(path))
    nb.cells = [c for c in nb.cells if c.cell_type != "raw"]  # shown as Markdown above
    body, _ = exporter.from_notebook_node(firewall.filter_notebook(nb))
    target = Path(output) if output else Path(path).with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def _review_exporter(firewall: OutputFirewall) -> Any:
    try:
        from jinja2 import DictLoader, pass_context
        from nbconvert import HTMLExporter
    except ImportError as exc:
        raise CodeActError(
            "HTML export needs nbconvert: pip install 'codeact-kernel[export]'"
        ) from exc

    class ReviewHTMLExporter(HTMLExporter):
        """nbconvert's lab page, with every Markdown cell sanitized once rendered."""

        @pass_context
        def markdown2html(self, context: Any, source: str) -> str:
            return firewall.sanitize_html(str(super().markdown2html(context, source)))

    loader = DictLoader({"codeact_review.html.j2": _EXPORT_TEMPLATE})
    return ReviewHTMLExporter(  # type: ignore[no-untyped-call]
        template_name="lab", template_file="codeact_review.html.j2", extra_loaders=[loader],
    )
