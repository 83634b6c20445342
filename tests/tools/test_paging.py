"""Paged host tools followed to the end (tools/paging.py): the wrapper on its own, then
through a real agent (scripted replies through litellm, a real sandboxed kernel, a real
trace notebook)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from traitlets import TraitError

from codeact_kernel import Tool, tool
from codeact_kernel.agent.replay import Replayer
from codeact_kernel.tools.hub import ToolOptions
from codeact_kernel.tools.paging import (
    MAX_PAGES,
    follow_as_recorded,
    follow_pages,
    page_layout,
    paged_parameter,
)

from ..helpers import fence, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer

BOARD = [{"flight": f"F{i}", "status": "cancelled" if i % 3 == 0 else "on time"}
         for i in range(1, 11)]
CALLS: list[str] = []


@tool
def departures(airport: str, page_token: str = "") -> dict[str, Any]:
    """One page of an airport's departures board (4 flights a page).

    Args:
        airport: The 3-letter IATA code.
        page_token: '' for the first page, then the previous page's "next_page".
    """
    CALLS.append(page_token)
    page = int(page_token[1:]) if page_token else 1
    more = page * 4 < len(BOARD)
    return {"airport": airport, "flights": BOARD[(page - 1) * 4: page * 4],
            "next_page": f"p{page + 1}" if more else None}


@tool
def looping(cursor: str | None = None) -> dict[str, Any]:
    """A feed whose second page points back at itself.

    Args:
        cursor: None for the first page.
    """
    CALLS.append(str(cursor))
    return {"items": [cursor or "first"], "next_cursor": "again"}


@tool
def changes_shape(cursor: str | None = None) -> dict[str, Any]:
    """A feed whose later pages are not pages.

    Args:
        cursor: None for the first page.
    """
    if cursor is None:
        return {"items": [1, 2], "next_cursor": "c2"}
    return {"error": "rate limited"}


@tool
def breaks_later(cursor: str | None = None) -> dict[str, Any]:
    """A feed whose second page fails.

    Args:
        cursor: None for the first page.
    """
    if cursor is None:
        return {"items": [1], "next_cursor": "c2"}
    raise ConnectionError("the feed went away on page 2")


@tool
def airport_code(city: str) -> str:
    """The IATA code of a city's airport.

    Args:
        city: The city.
    """
    return {"lisbon": "LIS"}[city.lower()]


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def test_a_first_page_call_gets_every_page_and_the_doc_says_so() -> None:
    paged = follow_pages(departures, max_pages=20)
    assert paged is not departures and paged.name == "departures"
    assert paged.signature == departures.signature
    result = paged.invoke(paged.bind(["LIS"], {}))
    assert [f["flight"] for f in result["flights"]] == [f["flight"] for f in BOARD]
    assert result["next_page"] is None and result["airport"] == "LIS"
    assert CALLS == ["", "p2", "p3"]
    assert paged.doc.startswith(departures.doc)
    assert "called without page_token, this returns the items of all pages (up to 20)" \
        in paged.doc
    assert "Pages are followed for you" in (paged.fn.__doc__ or "")  # the kernel's stub


def test_a_call_with_a_token_gets_that_page_as_written() -> None:
    paged = follow_pages(departures, max_pages=20)
    result = paged.invoke(paged.bind(["LIS", "p2"], {}))
    assert [f["flight"] for f in result["flights"]] == ["F5", "F6", "F7", "F8"]
    assert result["next_page"] == "p3" and CALLS == ["p2"]


def test_the_page_limit_keeps_the_token_of_the_pages_left() -> None:
    result = follow_pages(departures, max_pages=2).invoke({"airport": "LIS", "page_token": ""})
    assert len(result["flights"]) == 8 and result["next_page"] == "p3"
    assert CALLS == ["", "p2"]


def test_a_repeated_token_or_another_shape_stops_the_walk_and_an_error_is_raised() -> None:
    result = follow_pages(looping, max_pages=20).invoke({"cursor": None})
    assert result == {"items": ["first", "again"], "next_cursor": "again"}
    assert CALLS == ["None", "again"]  # the repeated token is not fetched a third time
    result = follow_pages(changes_shape, max_pages=20).invoke({"cursor": None})
    assert result == {"items": [1, 2], "next_cursor": "c2"}  # the token left to follow
    with pytest.raises(ConnectionError, match="went away on page 2"):
        follow_pages(breaks_later, max_pages=20).invoke({"cursor": None})


def test_what_is_not_a_paged_host_tool_is_left_alone() -> None:
    assert follow_pages(airport_code, max_pages=20) is airport_code
    assert paged_parameter(airport_code) is None
    assert paged_parameter(departures, names=("cursor",)) is None
    assert follow_pages(departures, max_pages=1) is departures
    once = follow_pages(departures, max_pages=20)
    assert follow_pages(once, max_pages=20) is once  # no second note
    approved = follow_pages(tool(requires_approval=True)(departures.fn), max_pages=20)
    assert approved.requires_approval

    class Remote(Tool):  # MCP tools and managed agents are Tool subclasses
        pass

    remote = Remote(departures.fn)
    assert follow_pages(remote, max_pages=20) is remote
    assert page_layout({"rows": [1], "other": [2], "next": "x"}) is None  # two lists
    assert page_layout({"rows": [1], "next": True}) is None  # a flag, not a token
    assert page_layout({"rows": [], "next_page": None}) == ("rows", "next_page")


def test_a_hostile_trace_cannot_turn_paging_into_a_flood_of_calls() -> None:
    with pytest.raises(TraitError):  # a run can record no more than a replay accepts
        ToolOptions(max_pages=MAX_PAGES + 1)
    honest = {"follow_pages": True, "max_pages": 20, "page_parameters": ["page_token"]}
    assert follow_as_recorded([departures], honest)[0] is not departures
    for agent_meta in ({**honest, "max_pages": 10**9}, {**honest, "max_pages": True},
                       {**honest, "page_parameters": "page_token"},
                       {**honest, "page_parameters": [7]}, {**honest, "follow_pages": 1},
                       ["follow_pages"], None):
        assert follow_as_recorded([departures], agent_meta) == [departures], agent_meta


def test_the_agent_serves_paged_tools_followed_and_lists_them_so(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    code = ('board = departures(airport_code("Lisbon"))\n'
            'final_answer(sum(f["status"] == "cancelled" for f in board["flights"]))')
    llm.enqueue(fence(code))
    agent = make_agent(llm, tmp_path, runtime_dir, tools=[departures, airport_code],
                       follow_pages=True)
    result = agent.run("How many flights from Lisbon are cancelled?")
    assert result.status == "answered", result.reason
    assert result.answer == 3  # F3, F6, F9: pages 1 to 3
    system = llm.requests[0]["messages"][0]["content"]
    assert "Pages are followed for you: called without page_token" in system
    nb = load_trace(result.trace_path)
    listed = {t["name"]: t["doc"] for t in nb.metadata["codeact"]["tools"]}
    assert "Pages are followed for you" in listed["departures"]
    assert "Pages are followed" not in listed["airport_code"]
    assert agent.tools[0] is departures  # the user's own list is left as given
    assert nb.metadata["codeact"]["agent"]["follow_pages"] is True
    # Replayed against the real tools, they are served as the run served them.
    replayer = Replayer(live_tools=True)
    replayer.session.runtime_dir = str(runtime_dir)
    report = replayer.replay(result.trace_path, tools=[departures, airport_code])
    assert report.all_same and report.counts() == {"same": 1}, report.cells
    assert CALLS == ["", "p2", "p3"] * 2  # the run's walk, then the replay's


def test_by_default_a_paged_tool_is_served_as_written(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence('final_answer(len(departures("LIS")["flights"]))'))
    result = make_agent(llm, tmp_path, runtime_dir,
                        tools=[departures]).run("How many flights on the first page?")
    assert result.answer == 4
    assert "Pages are followed" not in llm.requests[0]["messages"][0]["content"]
