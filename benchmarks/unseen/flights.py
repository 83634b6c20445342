"""Flight schedules: a departures board (paged), flight details, airport codes, aircraft."""

from __future__ import annotations

from typing import Any

from .common import ClockTime, Names, Number, Text, UnseenTask, paginate

_AIRPORTS = {"lisbon": "LIS", "porto": "OPO", "faro": "FAO", "madeira": "FNC"}

# (flight, origin, destination, departs, status, delay minutes, aircraft, price EUR, seats left)
_ROWS = [
    ("TP1350", "LIS", "Paris", "06:40", "on time", 0, "A320", 129.0, 12),
    ("FR7021", "LIS", "London", "07:15", "delayed", 35, "B738", 59.0, 3),
    ("TP1352", "LIS", "Madrid", "08:05", "delayed", 45, "A321", 98.0, 20),
    ("LH1173", "LIS", "Frankfurt", "09:30", "on time", 0, "A320", 176.0, 7),
    ("U27622", "LIS", "Geneva", "10:10", "cancelled", 0, "A319", 88.0, 0),
    ("TP1020", "LIS", "Rome", "11:45", "on time", 0, "A321", 141.0, 31),
    ("IB3107", "LIS", "Madrid", "12:20", "delayed", 20, "A320", 77.0, 9),
    ("KL1696", "LIS", "Amsterdam", "13:55", "cancelled", 0, "E190", 152.0, 0),
    ("TP1958", "LIS", "Berlin", "15:30", "on time", 0, "A320", 133.0, 18),
    ("FR1884", "LIS", "Dublin", "17:05", "delayed", 60, "B738", 64.0, 5),
    ("TP0410", "OPO", "Paris", "07:50", "on time", 0, "A320", 119.0, 14),
    ("FR3312", "OPO", "London", "10:35", "delayed", 25, "B738", 49.0, 22),
    ("TP1940", "OPO", "Lisbon", "12:05", "on time", 0, "E190", 69.0, 40),
    ("U24491", "OPO", "Basel", "14:20", "on time", 0, "A319", 93.0, 6),
    ("LH1181", "OPO", "Munich", "16:45", "cancelled", 0, "A320", 158.0, 0),
    ("TP1907", "FAO", "Lisbon", "09:15", "on time", 0, "E190", 59.0, 25),
    ("FR5531", "FAO", "Manchester", "13:40", "delayed", 50, "B738", 71.0, 11),
]
_KEYS = ("flight", "origin", "destination", "departs", "status", "delay_minutes",
         "aircraft", "price_eur", "seats_left")
_FLIGHTS: dict[str, dict[str, Any]] = {r[0]: dict(zip(_KEYS, r, strict=True)) for r in _ROWS}
_SEATS = {"A319": 144, "A320": 174, "A321": 220, "B738": 189, "E190": 106}


def airport_code(city: str) -> str:
    """The 3-letter IATA code of a city's airport, e.g. "Porto" -> "OPO".

    Args:
        city: The city's name.
    """
    key = city.strip().lower()
    if key not in _AIRPORTS:
        raise KeyError(f"no airport known for {city!r}")
    return _AIRPORTS[key]


def departures(airport: str, page_token: str = "") -> dict[str, Any]:
    """One page of today's departures board of an airport, earliest first (4 per page).

    Args:
        airport: The airport's 3-letter IATA code, e.g. "OPO".
        page_token: '' for the first page, then the previous page's "next_page".

    Returns:
        {"flights": [{"flight", "destination", "departs" ("HH:MM"), "status"}, ...],
         "next_page": a token for the next page, or None on the last page}.
    """
    code = airport.strip().upper()
    if code not in _AIRPORTS.values():
        raise ValueError(f"unknown airport {airport!r}: use the 3-letter IATA code; call "
                         "airport_code(city) first")
    rows = [{k: f[k] for k in ("flight", "destination", "departs", "status")}
            for f in _FLIGHTS.values() if f["origin"] == code]
    return paginate(rows, page_token, 4, code, "flights")


def flight_details(flight: str) -> dict[str, Any]:
    """Everything known about one flight of today.

    Args:
        flight: The flight number, e.g. "TP1350".

    Returns:
        {"flight", "origin", "destination", "departs", "status", "delay_minutes",
         "aircraft", "price_eur", "seats_left"}.
    """
    key = flight.strip().upper().replace(" ", "")
    if key not in _FLIGHTS:
        raise KeyError(f"no flight {flight!r} today")
    return dict(_FLIGHTS[key])


def aircraft_seats(aircraft: str) -> int:
    """Number of passenger seats of an aircraft type.

    Args:
        aircraft: The type code, e.g. "A320".
    """
    key = aircraft.strip().upper()
    if key not in _SEATS:
        raise KeyError(f"unknown aircraft type {aircraft!r}")
    return _SEATS[key]


def _from(code: str) -> list[dict[str, Any]]:
    return [f for f in _FLIGHTS.values() if f["origin"] == code]


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


_OPO_AFTER_NOON = min((f for f in _from("OPO") if _minutes(f["departs"]) > 12 * 60),
                      key=lambda f: _minutes(f["departs"]))
_TP1352 = _FLIGHTS["TP1352"]
_IB = _FLIGHTS["IB3107"]

TASKS = (
    UnseenTask(
        "flight_actual_departure", "flights", "easy", ("lookup", "compute"),
        "Flight TP1352 is running late. At what time will it actually depart? Answer as HH:MM.",
        (flight_details,), (flight_details,),
        ClockTime("08:50"),
        "f = flight_details('TP1352')\nh, m = map(int, f['departs'].split(':'))\n"
        "t = h * 60 + m + f['delay_minutes']\nfinal_answer(f'{t // 60:02d}:{t % 60:02d}')",
    ),
    UnseenTask(
        "flight_price_two", "flights", "easy", ("list-vs-lookup", "compute"),
        "How much do two tickets on flight LH1173 cost together, in euros?",
        (departures, flight_details), (flight_details,),
        Number(2 * _FLIGHTS["LH1173"]["price_eur"]),
        "final_answer(2 * flight_details('LH1173')['price_eur'])",
    ),
    UnseenTask(
        "porto_after_noon", "flights", "medium", ("conditional", "compute"),
        "Which flight leaves Porto airport (OPO) first after 12:00 today? Answer with the flight "
        "number.",
        (departures,), (departures,),
        Text(_OPO_AFTER_NOON["flight"], tuple(f["flight"] for f in _from("OPO")
                                              if f is not _OPO_AFTER_NOON)),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = departures('OPO', tok)\n"
        "    rows += p['flights']\n    tok = p['next_page']\n"
        "later = [r for r in rows if r['departs'] > '12:00']\n"
        "final_answer(min(later, key=lambda r: r['departs'])['flight'])",
    ),
    UnseenTask(
        "madrid_seat_gap", "flights", "medium", ("compute", "conditional"),
        "Two flights go from Lisbon to Madrid today, TP1352 and IB3107. How many more seats "
        "are left on the emptier one than on the other?",
        (departures, flight_details), (flight_details,),
        Number(abs(_TP1352["seats_left"] - _IB["seats_left"]), 0),
        "a, b = flight_details('TP1352'), flight_details('IB3107')\n"
        "final_answer(abs(a['seats_left'] - b['seats_left']))",
    ),
    UnseenTask(
        "lisbon_cancelled", "flights", "hard", ("pagination", "tool-advice", "conditional"),
        "Which flights departing from Lisbon today are cancelled? Answer with the list of "
        "their flight numbers.",
        (airport_code, departures), (airport_code, departures),
        Names(tuple(f["flight"] for f in _from("LIS") if f["status"] == "cancelled")),
        "code = airport_code('Lisbon')\nrows, tok = [], ''\nwhile tok is not None:\n"
        "    p = departures(code, tok)\n    rows += p['flights']\n    tok = p['next_page']\n"
        "final_answer([r['flight'] for r in rows if r['status'] == 'cancelled'])",
    ),
    UnseenTask(
        "porto_flying_seats", "flights", "hard", ("chain", "conditional", "compute"),
        "How many passenger seats in total do the aircraft of today's delayed or on-time "
        "(not cancelled) departures from Porto have? Use each flight's aircraft type.",
        (departures, flight_details, aircraft_seats),
        (departures, flight_details, aircraft_seats),
        Number(sum(_SEATS[f["aircraft"]] for f in _from("OPO") if f["status"] != "cancelled"),
               0),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = departures('OPO', tok)\n"
        "    rows += p['flights']\n    tok = p['next_page']\n"
        "total = sum(aircraft_seats(flight_details(r['flight'])['aircraft'])\n"
        "            for r in rows if r['status'] != 'cancelled')\nfinal_answer(total)",
    ),
)
