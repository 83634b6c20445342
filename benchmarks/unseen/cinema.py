"""A cinema: the day's screenings, seats available, ticket prices and film details."""

from __future__ import annotations

from typing import Any

from .common import ClockTime, Number, Text, UnseenTask

# (screening id, date, film, start, hall, seats available)
_ROWS = [
    ("SC-11", "2024-06-14", "Night Harbour", "14:00", 1, 42),
    ("SC-12", "2024-06-14", "Paper Moons", "15:30", 2, 3),
    ("SC-13", "2024-06-14", "Night Harbour", "17:15", 1, 18),
    ("SC-14", "2024-06-14", "The Glass Orchard", "18:00", 3, 57),
    ("SC-15", "2024-06-14", "Paper Moons", "19:45", 1, 9),
    ("SC-16", "2024-06-14", "Night Harbour", "20:30", 2, 6),
    ("SC-17", "2024-06-14", "Paper Moons", "21:10", 3, 25),
    ("SC-21", "2024-06-15", "The Glass Orchard", "13:30", 3, 80),
    ("SC-22", "2024-06-15", "Night Harbour", "16:00", 1, 35),
]
_SCREENINGS = {r[0]: r for r in _ROWS}
_FILMS = {"night harbour": (128, "12"), "paper moons": (97, "6"),
          "the glass orchard": (141, "16")}
_BASE = {1: 11.0, 2: 9.5, 3: 13.0}  # adult price per hall
_FACTOR = {"adult": 1.0, "child": 0.6, "senior": 0.75}


def screenings(date: str) -> list[dict[str, Any]]:
    """The screenings of a day.

    Args:
        date: The day as "YYYY-MM-DD".

    Returns:
        A list of {"screening_id", "film", "start" ("HH:MM"), "hall"}.
    """
    return [{"screening_id": s, "film": f, "start": t, "hall": h}
            for s, d, f, t, h, _ in _ROWS if d == date.strip()]


def _screening(screening_id: str) -> tuple[Any, ...]:
    key = screening_id.strip().upper()
    if key not in _SCREENINGS:
        raise ValueError(f"{screening_id!r} is not a screening id (they look like 'SC-12'); "
                         "call screenings(date) first")
    return _SCREENINGS[key]


def seats_available(screening_id: str) -> int:
    """How many seats are still free for a screening.

    Args:
        screening_id: The screening's id, e.g. "SC-12".
    """
    return int(_screening(screening_id)[5])


def ticket_price(screening_id: str, category: str) -> float:
    """The price of one ticket for a screening, in euros.

    Args:
        screening_id: The screening's id, e.g. "SC-12".
        category: "adult", "child" or "senior".
    """
    row = _screening(screening_id)
    if category not in _FACTOR:
        raise ValueError(f"unknown ticket category {category!r}: use 'adult', 'child' or "
                         "'senior'")
    return round(_BASE[row[4]] * _FACTOR[category], 2)


def film_info(title: str) -> dict[str, Any]:
    """Details of a film.

    Args:
        title: The film's title.

    Returns:
        {"title", "runtime_minutes", "age_rating"}.
    """
    key = title.strip().lower()
    if key not in _FILMS:
        raise KeyError(f"no film titled {title!r}")
    runtime, rating = _FILMS[key]
    return {"title": title.strip(), "runtime_minutes": runtime, "age_rating": rating}


def _price(sid: str, category: str) -> float:
    return round(_BASE[_SCREENINGS[sid][4]] * _FACTOR[category], 2)


_DAY = [r for r in _ROWS if r[1] == "2024-06-14"]
_MOST_SEATS = max(_DAY, key=lambda r: r[5])
_LAST_NH = max((r for r in _DAY if r[2] == "Night Harbour"), key=lambda r: r[3])
_END = int(_LAST_NH[3][:2]) * 60 + int(_LAST_NH[3][3:]) + _FILMS["night harbour"][0]
_FAMILY = min(2 * _price(r[0], "adult") + 2 * _price(r[0], "child")
              for r in _DAY if r[2] == "Paper Moons" and r[5] >= 4)

TASKS = (
    UnseenTask(
        "screening_count", "cinema", "easy", ("lookup", "compute"),
        "How many screenings are there on 2024-06-14?",
        (screenings,), (screenings,),
        Number(len(_DAY), 0),
        "final_answer(len(screenings('2024-06-14')))",
    ),
    UnseenTask(
        "seats_sc15", "cinema", "easy", ("list-vs-lookup", "lookup"),
        "How many seats are still free for screening SC-15?",
        (screenings, seats_available), (seats_available,),
        Number(_SCREENINGS["SC-15"][5], 0),
        "final_answer(seats_available('SC-15'))",
    ),
    UnseenTask(
        "family_tickets_sc14", "cinema", "medium", ("tool-advice", "compute"),
        "What do 2 adult tickets and 3 children's tickets for screening SC-14 cost together, "
        "in euros?",
        (ticket_price,), (ticket_price,),
        Number(round(2 * _price("SC-14", "adult") + 3 * _price("SC-14", "child"), 2), 0.011),
        "final_answer(round(2 * ticket_price('SC-14', 'adult') + "
        "3 * ticket_price('SC-14', 'child'), 2))",
    ),
    UnseenTask(
        "emptiest_screening", "cinema", "medium", ("conditional", "compute"),
        "Which film has the screening with the most free seats on 2024-06-14? Answer with the "
        "film's title.",
        (screenings, seats_available), (screenings, seats_available),
        Text(_MOST_SEATS[2], tuple({r[2] for r in _DAY} - {_MOST_SEATS[2]})),
        "s = screenings('2024-06-14')\n"
        "final_answer(max(s, key=lambda r: seats_available(r['screening_id']))['film'])",
    ),
    UnseenTask(
        "last_night_harbour_end", "cinema", "hard", ("chain", "conditional", "compute"),
        "At what time does the last screening of Night Harbour on 2024-06-14 end? Answer as "
        "HH:MM.",
        (screenings, film_info), (screenings, film_info),
        ClockTime(f"{_END // 60:02d}:{_END % 60:02d}"),
        "s = [r for r in screenings('2024-06-14') if r['film'] == 'Night Harbour']\n"
        "last = max(s, key=lambda r: r['start'])\nh, m = map(int, last['start'].split(':'))\n"
        "t = h * 60 + m + film_info('Night Harbour')['runtime_minutes']\n"
        "final_answer(f'{t // 60:02d}:{t % 60:02d}')",
    ),
    UnseenTask(
        "cheapest_family_outing", "cinema", "hard", ("chain", "conditional", "compute"),
        "Two adults and two children want to see Paper Moons on 2024-06-14, at a screening "
        "with at least 4 free seats. What is the lowest total price they can pay, in euros?",
        (screenings, seats_available, ticket_price),
        (screenings, seats_available, ticket_price),
        Number(round(_FAMILY, 2), 0.011),
        "best = None\nfor r in screenings('2024-06-14'):\n"
        "    sid = r['screening_id']\n"
        "    if r['film'] != 'Paper Moons' or seats_available(sid) < 4:\n        continue\n"
        "    cost = 2 * ticket_price(sid, 'adult') + 2 * ticket_price(sid, 'child')\n"
        "    best = cost if best is None else min(best, cost)\nfinal_answer(round(best, 2))",
    ),
)
