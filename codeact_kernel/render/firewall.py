"""The output firewall: what of a sandbox's MIME bundle a trusting frontend may render.

JupyterLab trusts the outputs of a cell while it runs, and an exported page renders
whatever HTML it holds, so active content that the sandbox produced (JavaScript, HTML with
scripts or event handlers, SVG with scripts, Markdown with raw HTML or ``javascript:``
links) would run in the reader's browser, with the reader's Jupyter token. Every host-side
renderer (the ``%%agent`` display, ``codeact export --html``, the review kernelspec) passes
bundles through :class:`OutputFirewall` first.

By default a bundle keeps plain text, PNG and JPEG (checked to be base64), HTML sanitized by
nh3 (ammonia) down to what tables and text need, SVG turned into an ``<img>`` (a browser
never runs script in an image), and Markdown shown as its text. Anything else is removed,
and the output says what was removed. The trace itself keeps every bundle as the kernel
sent it: it is the record, and JupyterLab does not trust outputs read from a file.
"""

from __future__ import annotations

import base64
import copy
import html
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from traitlets import Bool, List, TraitError, Unicode, validate
from traitlets.config import Configurable

if TYPE_CHECKING:
    from nbformat import NotebookNode

# nbformat is imported where notebooks are handled: the review kernel's launcher uses
# this module at every kernel start, and nbformat's import can take seconds.

# Never let through without OutputFirewall.trusted, whatever the allow-list says.
ACTIVE_MARKERS = ("javascript", "ecmascript", "widget")
DEFAULT_ALLOWED = ("text/plain", "image/png", "image/jpeg", "text/html", "image/svg+xml",
                   "text/markdown")
# What DataFrames, Styler-less tables and formatted text need; no style, no forms, no
# embedding, no ids (DOM clobbering of the page around the output).
HTML_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del",
    "details", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp",
    "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "tt", "u", "ul", "var",
}
HTML_ATTRIBUTES = {
    "*": {"class", "title", "align", "valign", "lang", "dir"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
}
# An <img> may show only an inline image: a remote one would be a beacon telling the
# model's author who opened the output, from where and when.
_IMAGE_URL = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*", re.I)
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass
class FilteredBundle:
    """A bundle after the firewall: what may be rendered, and the MIME types removed."""

    data: dict[str, Any]
    metadata: dict[str, Any]
    removed: list[str] = field(default_factory=list)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)  # nbformat's multi-line form
    return None


def _base64_image(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    compact = "".join(text.split())
    if len(compact) % 4 or not _BASE64.fullmatch(compact):
        return None
    return compact


def _attribute(element: str, attribute: str, value: str) -> str | None:
    if element == "img" and attribute == "src":
        return value if _IMAGE_URL.fullmatch(value.strip()) else None
    if element == "a" and attribute == "href":
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    return value


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return int(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


_METADATA_KEYS: dict[str, Callable[[Any], Any]] = {
    "width": _positive_int,
    "height": _positive_int,
    "unconfined": _flag,
    "isolated": _flag,
    "needs_background": lambda v: v if v in ("light", "dark") else None,
}


def _metadata(metadata: Mapping[str, Any], kept: set[str]) -> dict[str, Any]:
    """Only the display hints a renderer reads, each of its own type: templates and
    frontends write these into attributes, where a string could open a new one."""
    out: dict[str, Any] = {}
    for mime, hints in metadata.items():
        if mime not in kept or not isinstance(hints, Mapping):
            continue
        clean = {k: check(hints[k]) for k, check in _METADATA_KEYS.items() if k in hints}
        clean = {k: v for k, v in clean.items() if v is not None}
        if clean:
            out[mime] = clean
    return out


def is_active(mime: str) -> bool:
    """Whether a MIME type carries code that a frontend runs (JavaScript, widget views)."""
    lowered = mime.lower()
    return any(marker in lowered for marker in ACTIVE_MARKERS)


def removal_note(removed: list[str]) -> str:
    return (f"[codeact: removed from this sandbox output: {', '.join(removed)}. Active or "
            "unknown content is not rendered; see the security notes in the docs]")


class OutputFirewall(Configurable):
    """Filters the MIME bundles that came out of the sandbox before anything renders them."""

    allowed_mime_types = List(
        Unicode(),
        default_value=list(DEFAULT_ALLOWED),
        help="MIME types an output may keep. text/html is sanitized (nh3), image/png and "
        "image/jpeg must be base64, image/svg+xml is shown as an <img>, text/markdown as "
        "its text; another type listed here passes as the kernel sent it. Types that carry "
        "JavaScript (application/javascript, widget views) cannot be listed: see `trusted`.",
    ).tag(config=True)
    trusted = Bool(
        False,
        help="Render sandbox outputs as they are, JavaScript included (interactive plots). "
        "Their code then runs in your browser with your Jupyter token, which reaches your "
        "terminals and kernels: only for outputs you trust. A warning is shown every time.",
    ).tag(config=True)

    @validate("allowed_mime_types")
    def _no_active_types(self, proposal: Any) -> list[str]:
        active = [m for m in proposal["value"] if is_active(m)]
        if active:
            raise TraitError(
                f"OutputFirewall.allowed_mime_types cannot list {', '.join(active)}: it "
                "carries JavaScript. To render sandbox outputs unfiltered, set "
                "OutputFirewall.trusted = True (or %%agent --trust-outputs)."
            )
        return list(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cleaner: Any = None

    def sanitize_html(self, text: str) -> str:
        """HTML with only text, tables and inline images left: no script, handler or style."""
        if self._cleaner is None:
            import nh3

            self._cleaner = nh3.Cleaner(
                tags=HTML_TAGS, attributes=HTML_ATTRIBUTES, attribute_filter=_attribute,
                url_schemes={"http", "https", "mailto", "data"}, strip_comments=True,
                link_rel="noopener noreferrer nofollow",
            )
        cleaned: str = self._cleaner.clean(text)
        return cleaned

    def filter_bundle(self, data: Mapping[str, Any],
                      metadata: Mapping[str, Any] | None = None) -> FilteredBundle:
        """The renderable part of one bundle; ``removed`` names what was dropped."""
        metadata = metadata if isinstance(metadata, Mapping) else {}
        if self.trusted:
            return FilteredBundle(copy.deepcopy(dict(data)), copy.deepcopy(dict(metadata)))
        out: dict[str, Any] = {}
        removed: list[str] = []
        allowed = set(self.allowed_mime_types)
        for mime, value in data.items():
            kept = self._convert(mime, value, out) if mime in allowed and not is_active(
                mime) else False
            if not kept:
                removed.append(mime)
        if removed:
            self._add_note(out, removed)
        return FilteredBundle(out, _metadata(metadata, set(out)), removed)

    def _convert(self, mime: str, value: Any, out: dict[str, Any]) -> bool:
        if mime in ("image/png", "image/jpeg"):
            image = _base64_image(value)
            if image is not None:
                out[mime] = image
            return image is not None
        text = _text(value)
        if mime == "text/plain":
            if text is not None:
                out.setdefault(mime, text)  # a Markdown source may have taken its place
        elif mime == "text/html":
            if text is not None:
                out[mime] = self.sanitize_html(text)
        elif mime == "image/svg+xml":
            if text is not None:
                encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
                out.setdefault("text/html", f'<img src="data:image/svg+xml;base64,{encoded}"'
                                            ' alt="SVG image">')
        elif mime == "text/markdown":
            if text is not None:
                out["text/plain"] = text  # the source, shown as text: nothing renders
        else:
            out[mime] = copy.deepcopy(value)  # listed by the user, passed as it is
            return True
        return text is not None

    @staticmethod
    def _add_note(out: dict[str, Any], removed: list[str]) -> None:
        note = removal_note(removed)
        plain = out.get("text/plain")
        out["text/plain"] = f"{plain}\n{note}" if plain else note
        if "text/html" in out:
            out["text/html"] += f"<p><em>{html.escape(note)}</em></p>"

    def filter_output(self, output: Mapping[str, Any]) -> NotebookNode:
        """A copy of one nbformat output with its bundle filtered (streams and errors are
        text, which every renderer escapes)."""
        from nbformat import from_dict

        node: NotebookNode = from_dict(copy.deepcopy(dict(output)))
        if node.get("output_type") in ("display_data", "execute_result"):
            filtered = self.filter_bundle(node.get("data", {}), node.get("metadata", {}))
            node["data"], node["metadata"] = from_dict(filtered.data), from_dict(
                filtered.metadata)
        return node

    def filter_notebook(self, nb: NotebookNode) -> NotebookNode:
        """A copy of a notebook whose code cells' outputs are all filtered."""
        out: NotebookNode = copy.deepcopy(nb)
        for cell in out.cells:
            if cell.get("cell_type") == "code":
                cell.outputs = [self.filter_output(o) for o in cell.get("outputs", [])]
        return out


