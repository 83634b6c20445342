"""Paged tools followed to the end: a call for the first page returns every page.

A host tool is paged when it takes a page-token parameter (``page_token``, ``cursor`` ...;
``ToolOptions.page_parameters``) whose default asks for the first page, and returns a dict
holding one list of items beside a next-page token (a key with "next" in its name, such as
``next_page``, ``nextPageToken`` or ``next_cursor``). As SDK paginators do (boto3's,
Stripe's auto-paging), the agent then follows the tokens on the host: the kernel gets one
result with the items of every page and the token of what is left (None at the end), and
the tool's doc says so. A call that passes a token gets that page alone, as written.

Why: small models read the first page and answer from it. In session 10's run of the unseen
tasks, 5 of the tuning half's 12 failures (and 8 of the held-out half's 13) had left a
next-page token unfollowed. Off by default (``ToolOptions.follow_pages``): measured on the
tuning half, those 5 tasks got every page and still failed on something else (a dict
iterated as a list, a tool's def copied), 11 of 24 passed against 12, and the median run
went from 20 s to 32 s; a user's paged API may also charge for every page.

Only plain host tools are wrapped: MCP tools and managed agents keep their own contract.
A later page that is not shaped like the first, a token seen before, or ``max_pages`` stop
the walk; the result then carries the token not followed, so nothing is silently lost. A
later page's error is the call's error, as the tool raised it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from typing import Any

from .tool import Tool

__all__ = ["MAX_PAGES", "PAGE_PARAMETERS", "follow_all", "follow_as_recorded", "follow_pages",
           "page_layout", "paged_parameter"]

PAGE_PARAMETERS = ("page_token", "pageToken", "cursor", "page_cursor", "next_token",
                   "continuation_token")

_MARK = "_codeact_follows_pages"
# The most pages one call may follow; a replay refuses a trace that records more.
MAX_PAGES = 1000
_NOTE = ("Pages are followed for you: called without {param}, this returns the items of "
         "all pages (up to {limit}) in one result, and its next-page token is None unless "
         "pages are left. Pass {param} only to start from a later page.")


def paged_parameter(tool: Tool, names: Sequence[str] = PAGE_PARAMETERS) -> str | None:
    """The tool's page-token parameter, if it has one whose default is the first page."""
    for name in names:
        param = tool.signature.parameters.get(name)
        if param is not None and param.default in ("", None):
            return name
    return None


def page_layout(result: Any) -> tuple[str, str] | None:
    """``(items key, next-token key)`` when ``result`` looks like one page, else None."""
    if not isinstance(result, dict):
        return None
    lists = [k for k, v in result.items() if isinstance(v, list)]
    tokens = [k for k, v in result.items()
              if isinstance(k, str) and "next" in k.lower()
              and (v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)))]
    if len(lists) != 1 or len(tokens) != 1:
        return None
    return lists[0], tokens[0]


def follow_pages(tool: Tool, max_pages: int,
                 names: Sequence[str] = PAGE_PARAMETERS) -> Tool:
    """``tool`` itself when it is not a paged host tool; else a tool of the same name,
    signature and approval whose first-page calls return every page."""
    param = paged_parameter(tool, names)
    if (param is None or type(tool) is not Tool or max_pages < 2
            or getattr(tool.fn, _MARK, False)):
        return tool
    first_page = tool.signature.parameters[param].default

    # A plain function, whatever the tool: a coroutine tool runs inside tool.invoke.
    @functools.wraps(tool.fn)
    def every_page(*args: Any, **kwargs: Any) -> Any:
        bound = tool.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        first = tool.invoke(arguments)
        if arguments[param] != first_page:
            return first
        return _walk(tool, arguments, param, first, max_pages)

    every_page.__doc__ = f"{tool.doc}\n\n{_NOTE.format(param=param, limit=max_pages)}"
    every_page.__signature__ = tool.signature  # type: ignore[attr-defined]
    setattr(every_page, _MARK, True)
    return Tool(every_page, name=tool.name, requires_approval=tool.requires_approval)


def follow_all(tools: Sequence[Tool], max_pages: int,
               names: Sequence[str] = PAGE_PARAMETERS) -> list[Tool]:
    """Every tool of ``tools`` through :func:`follow_pages`."""
    return [follow_pages(t, max_pages, names) for t in tools]


def follow_as_recorded(tools: Sequence[Tool], agent_meta: Any) -> list[Tool]:
    """``tools`` as a trace's run served them (its ``agent`` metadata), for a replay that
    calls the real tools. The notebook may be hostile: anything malformed serves the
    tools as written."""
    if not isinstance(agent_meta, dict) or agent_meta.get("follow_pages") is not True:
        return list(tools)
    limit, names = agent_meta.get("max_pages"), agent_meta.get("page_parameters")
    if type(limit) is not int or not 2 <= limit <= MAX_PAGES:
        return list(tools)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names[:50]):
        return list(tools)
    return follow_all(tools, limit, names[:50])


def _walk(tool: Tool, arguments: dict[str, Any], param: str, first: Any,
          max_pages: int) -> Any:
    layout = page_layout(first)
    if layout is None:
        return first
    items_key, next_key = layout
    items = list(first[items_key])
    token = first[next_key]
    seen: set[Hashable] = set()
    pages = 1
    while token not in (None, "") and pages < max_pages and token not in seen:
        seen.add(token)
        page = tool.invoke({**arguments, param: token})
        if page_layout(page) != layout:
            break  # not a page like the first: the token stays for the model to follow
        items.extend(page[items_key])
        token = page[next_key]
        pages += 1
    return {**first, items_key: items, next_key: token}
