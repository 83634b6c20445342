"""Finding active content in HTML as a browser would parse it (for the attack tests).

It looks for what runs or loads when a page or an output is rendered: script-like
elements, event-handler attributes, and URLs with a scheme that executes. Markdown is
rendered to HTML first with nbconvert's own renderer (the one an export uses), and SVG
is parsed as the markup it is.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

ACTIVE_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "base",
               "form", "link", "meta", "style", "foreignobject", "animate", "set",
               "handler", "listener"}
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "background",
             "poster", "codebase", "dynsrc", "lowsrc", "from", "to", "values", "by"}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:text/html", "data:application",
               "data:image/svg")


# A page's own head may style itself and carry its CSP; nothing else may.
HEAD_ONLY = {"style", "meta", "link"}


class _Finder(HTMLParser):
    def __init__(self, page: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.page = page
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self.in_head = True
        if tag in ACTIVE_TAGS and not (self.page and self.in_head and tag in HEAD_ONLY):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            name = name.lower()
            text = "".join((value or "").split()).lower()
            if name.startswith("on") or name == "srcdoc" or (name == "style" and "url(" in text):
                self.found.append(f"<{tag} {name}=...>")
            elif tag == "img" and name == "src" and text.startswith("data:image/"):
                continue  # an image document never runs script, SVG included
            elif name in URL_ATTRS and text.startswith(BAD_SCHEMES):
                self.found.append(f"<{tag} {name}={text[:30]}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.in_head = False

    handle_startendtag = handle_starttag


def active_in_html(html: str, page: bool = False) -> list[str]:
    """Active content in an HTML fragment, or in a whole ``page`` (whose head may style)."""
    finder = _Finder(page)
    finder.feed(html)
    finder.close()
    return finder.found


def active_in_markdown(markdown: str) -> list[str]:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return active_in_html(markdown2html_mistune(markdown))


def active_in_bundle(data: dict[str, Any]) -> list[str]:
    """Everything in one MIME bundle that a trusting frontend would run or load."""
    found: list[str] = []
    for mime, value in data.items():
        text = value if isinstance(value, str) else "".join(value) if isinstance(
            value, list) else str(value)
        lowered = mime.lower()
        if "javascript" in lowered or "ecmascript" in lowered or "widget" in lowered:
            found.append(mime)
        elif lowered == "text/html" or lowered.endswith("+xml") or lowered == "text/xml":
            found += [f"{mime}: {a}" for a in active_in_html(text)]
        elif lowered == "text/markdown" or lowered == "text/latex":
            found += [f"{mime}: {a}" for a in active_in_markdown(text)]
        elif lowered.startswith("image/") and lowered not in ("image/png", "image/jpeg"):
            found.append(mime)
    return found
