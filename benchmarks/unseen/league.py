"""A football league: match results, a paged league table, team ids and squads."""

from __future__ import annotations

from typing import Any

from .common import Names, Number, Text, UnseenTask, paginate

_TEAMS = {
    "T01": "Northfield", "T02": "Eastbrook", "T03": "Harbour City", "T04": "Rovers",
    "T05": "Millbank", "T06": "Westgate", "T07": "Kingsley", "T08": "Ashford",
}
# (round, home, away, home goals, away goals)
_MATCHES = [
    (1, "Northfield", "Eastbrook", 2, 1), (1, "Harbour City", "Rovers", 0, 0),
    (1, "Millbank", "Westgate", 3, 2), (1, "Kingsley", "Ashford", 1, 4),
    (2, "Eastbrook", "Harbour City", 5, 1), (2, "Rovers", "Millbank", 2, 2),
    (2, "Westgate", "Kingsley", 0, 1), (2, "Ashford", "Northfield", 2, 2),
    (3, "Northfield", "Rovers", 1, 0), (3, "Harbour City", "Millbank", 2, 3),
    (3, "Eastbrook", "Kingsley", 3, 0), (3, "Westgate", "Ashford", 1, 1),
    (4, "Millbank", "Northfield", 0, 2), (4, "Rovers", "Eastbrook", 1, 3),
    (4, "Kingsley", "Harbour City", 2, 2), (4, "Ashford", "Westgate", 0, 3),
    (5, "Northfield", "Kingsley", 3, 3), (5, "Eastbrook", "Ashford", 2, 0),
    (5, "Westgate", "Rovers", 2, 1), (5, "Harbour City", "Millbank", 1, 0),
]
_SQUADS = {
    "T01": [("Ola Berg", 4), ("Tim Aho", 3), ("Jon Rask", 2), ("Ed Moss", 1)],
    "T02": [("Luis Prado", 7), ("Kai Ito", 5), ("Ben Osei", 3), ("Rui Sa", 1)],
    "T04": [("Max Dorn", 2), ("Ivo Peric", 1), ("Sam Lowe", 1)],
    "T05": [("Alf Core", 3), ("Dan Pye", 3), ("Noah Fenn", 2)],
}


def _record(team: str) -> list[dict[str, Any]]:
    rows = []
    for rnd, home, away, hg, ag in _MATCHES:
        if team in (home, away):
            at_home = team == home
            rows.append({"round": rnd, "opponent": away if at_home else home,
                         "venue": "home" if at_home else "away",
                         "scored": hg if at_home else ag, "conceded": ag if at_home else hg})
    return rows


def _table() -> list[dict[str, Any]]:
    rows = []
    for team in _TEAMS.values():
        games = _record(team)
        won = sum(g["scored"] > g["conceded"] for g in games)
        drawn = sum(g["scored"] == g["conceded"] for g in games)
        diff = sum(g["scored"] - g["conceded"] for g in games)
        rows.append({"team": team, "played": len(games), "points": 3 * won + drawn,
                     "goal_diff": diff})
    rows.sort(key=lambda r: (-r["points"], -r["goal_diff"], r["team"]))
    return [{"position": i, **r} for i, r in enumerate(rows, 1)]


def team_results(team: str) -> list[dict[str, Any]]:
    """The league matches a team has played this season, in round order.

    Args:
        team: The team's name, e.g. "Westgate".

    Returns:
        A list of {"round", "opponent", "venue" ("home" or "away"), "scored", "conceded"}.
    """
    name = next((t for t in _TEAMS.values() if t.lower() == team.strip().lower()), None)
    if name is None:
        raise KeyError(f"no team named {team!r}")
    return _record(name)


def league_table(page_token: str = "") -> dict[str, Any]:
    """One page of the league table, best first (3 teams per page).

    Args:
        page_token: '' for the first page, then the previous page's "next_page".

    Returns:
        {"rows": [{"position", "team", "played", "points", "goal_diff"}, ...],
         "next_page": a token for the next page, or None on the last page}.
    """
    return paginate(_table(), page_token, 3, "table", "rows")


def team_id(team: str) -> str:
    """The id of a team, e.g. "Westgate" -> "T06".

    Args:
        team: The team's name.
    """
    for tid, name in _TEAMS.items():
        if name.lower() == team.strip().lower():
            return tid
    raise KeyError(f"no team named {team!r}")


def squad(team_id: str) -> list[dict[str, Any]]:
    """The players of a team with their league goals this season.

    Args:
        team_id: The team's id, e.g. "T06" (not its name).

    Returns:
        A list of {"player", "goals"}.
    """
    key = team_id.strip().upper()
    if key not in _TEAMS:
        raise ValueError(f"unknown team id {team_id!r}: ids look like 'T06'; call "
                         "team_id(name) first")
    return [{"player": p, "goals": g} for p, g in _SQUADS.get(key, [])]


_NF = _record("Northfield")
_EB = _record("Eastbrook")
_TOP = _table()[0]
_TOP_ID = next(i for i, n in _TEAMS.items() if n == _TOP["team"])
_ROVERS_BEST = max(_SQUADS["T04"], key=lambda p: p[1])

TASKS = (
    UnseenTask(
        "northfield_goals", "league", "easy", ("compute",),
        "How many goals has Northfield scored in total this season?",
        (team_results,), (team_results,),
        Number(sum(g["scored"] for g in _NF), 0),
        "final_answer(sum(m['scored'] for m in team_results('Northfield')))",
    ),
    UnseenTask(
        "eastbrook_home_wins", "league", "easy", ("conditional", "compute"),
        "How many of its home matches has Eastbrook won?",
        (team_results,), (team_results,),
        Number(sum(g["venue"] == "home" and g["scored"] > g["conceded"] for g in _EB), 0),
        "m = team_results('Eastbrook')\n"
        "final_answer(sum(1 for r in m if r['venue'] == 'home' and r['scored'] > r['conceded']))",
    ),
    UnseenTask(
        "rovers_top_scorer", "league", "medium", ("tool-advice", "conditional"),
        "Who is the top scorer of the Rovers squad? Answer with the player's name.",
        (team_id, squad), (team_id, squad),
        Text(_ROVERS_BEST[0], tuple(p for p, _ in _SQUADS["T04"] if p != _ROVERS_BEST[0])),
        "players = squad(team_id('Rovers'))\n"
        "final_answer(max(players, key=lambda p: p['goals'])['player'])",
    ),
    UnseenTask(
        "eastbrook_biggest_win", "league", "medium", ("compute", "conditional"),
        "Against which opponent did Eastbrook win by the largest goal margin this season?",
        (team_results,), (team_results,),
        Text(max(_EB, key=lambda g: g["scored"] - g["conceded"])["opponent"],
             tuple(sorted({g["opponent"] for g in _EB} - {
                 max(_EB, key=lambda g: g["scored"] - g["conceded"])["opponent"]}))),
        "m = team_results('Eastbrook')\n"
        "final_answer(max(m, key=lambda r: r['scored'] - r['conceded'])['opponent'])",
    ),
    UnseenTask(
        "negative_goal_diff", "league", "hard", ("pagination", "conditional"),
        "Which teams in the league table have a negative goal difference? Answer with the "
        "list of team names.",
        (league_table,), (league_table,),
        Names(tuple(r["team"] for r in _table() if r["goal_diff"] < 0)),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = league_table(tok)\n"
        "    rows += p['rows']\n    tok = p['next_page']\n"
        "final_answer([r['team'] for r in rows if r['goal_diff'] < 0])",
    ),
    UnseenTask(
        "leader_squad_goals", "league", "hard", ("chain", "tool-advice", "compute"),
        "How many goals have the players of the team at the top of the league table scored "
        "in total?",
        (league_table, team_id, squad), (league_table, team_id, squad),
        Number(sum(g for _, g in _SQUADS[_TOP_ID]), 0),
        "top = league_table('')['rows'][0]['team']\n"
        "final_answer(sum(p['goals'] for p in squad(team_id(top))))",
    ),
)
