"""The output firewall's rules one by one (the real paths, attacks from a real kernel, are in
tests/security/test_render.py and test_review_kernel.py); no kernel needed."""

from __future__ import annotations

import base64

import pytest
from traitlets import TraitError

from codeact_kernel.render.escape import escape_markdown, escape_terminal
from codeact_kernel.render.firewall import OutputFirewall

from ..security.active import active_in_bundle, active_in_html, active_in_markdown

HANDLERS = [
    '<img src=x onerror="alert(1)">', '<a href="javascript:alert(1)">x</a>',
    '<a href=" JaVaScRiPt:alert(1)">x</a>', '<svg><script>alert(1)</script></svg>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<iframe srcdoc="<script>alert(1)</script>">', '<object data="data:text/html,x">',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    '<div style="background:url(https://beacon.example/p)">x</div>',
    '<img src="https://beacon.example/p.png">', '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<details open ontoggle=alert(1)>', '<!--<img src=x onerror=alert(1)>-->',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
]


@pytest.mark.parametrize("html", HANDLERS)
def test_sanitized_html_is_inert(html: str) -> None:
    out = OutputFirewall().filter_bundle({"text/html": html}).data["text/html"]
    assert not active_in_html(out), out
    assert "beacon.example" not in out and "evil.example" not in out


def test_tables_and_text_survive() -> None:
    html = ('<table border="1" class="dataframe"><thead><tr><th>a</th></tr></thead>'
            '<tbody><tr><td colspan="2">1 &lt; 2</td></tr></tbody></table>'
            '<b>bold</b> <a href="https://example.org">link</a>')
    out = OutputFirewall().filter_bundle({"text/html": html}).data["text/html"]
    assert '<table border="1" class="dataframe">' in out and '<td colspan="2">' in out
    assert "<b>bold</b>" in out and 'href="https://example.org"' in out


def test_svg_becomes_an_image_and_markdown_text() -> None:
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    out = OutputFirewall().filter_bundle({"image/svg+xml": svg, "text/plain": "<svg>"}).data
    assert out["text/html"] == (f'<img src="data:image/svg+xml;base64,'
                                f'{base64.b64encode(svg.encode()).decode()}" alt="SVG image">')
    assert "image/svg+xml" not in out
    md = OutputFirewall().filter_bundle({"text/markdown": "[x](javascript:1) <b>b</b>"}).data
    assert md == {"text/plain": "[x](javascript:1) <b>b</b>"}


def test_removed_types_are_named_and_metadata_is_typed() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    result = OutputFirewall().filter_bundle(
        {"application/javascript": "x", "application/x-new": "y", "image/png": png,
         "image/jpeg": 'AAAA" onerror="x'},
        {"image/png": {"width": "1 onerror=x", "height": 3.0, "x": 1}, "other": 5})
    assert result.removed == ["application/javascript", "application/x-new", "image/jpeg"]
    assert result.data["image/png"] == png
    assert "application/javascript" in result.data["text/plain"]
    assert result.metadata == {"image/png": {"height": 3}}
    assert not active_in_bundle(result.data)


def test_the_allow_list_is_configurable_but_never_javascript() -> None:
    firewall = OutputFirewall(allowed_mime_types=["text/plain", "application/json"])
    out = firewall.filter_bundle({"application/json": {"a": 1}, "text/html": "<b>x</b>"})
    assert out.data["application/json"] == {"a": 1} and out.removed == ["text/html"]
    for active in ("application/javascript", "text/javascript",
                   "application/vnd.jupyter.widget-view+json"):
        with pytest.raises(TraitError, match=r"OutputFirewall\.trusted"):
            OutputFirewall(allowed_mime_types=["text/plain", active])


def test_trusted_passes_everything() -> None:
    bundle = {"application/javascript": "alert(1)", "text/html": "<script>x</script>"}
    assert OutputFirewall(trusted=True).filter_bundle(bundle).data == bundle


def test_escaped_text_is_inert_where_it_goes() -> None:
    hostile = "a <img src=x onerror=alert(1)> [c](javascript:alert(2)) **b** \x1b]52;c;x\x07"
    assert not active_in_markdown(escape_markdown(hostile))
    assert "\x1b" not in escape_terminal(hostile) and "\\x1b]52;c;x\\x07" in escape_terminal(
        hostile)
    assert escape_terminal("\x1b[31mred\x1b[0m\x1b[2J", keep_colors=True) == (
        "\x1b[31mred\x1b[0m\\x1b[2J")
