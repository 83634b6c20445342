"""Parcel shipping: a customer's shipments, tracking events, parcel details and rates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .common import Names, Number, Text, UnseenTask

_CUSTOMERS = {
    "bluebird books": ["ZX4410021", "ZX4410057", "ZX4410093", "ZX4410120"],
    "harlow tools": ["ZX5520310", "ZX5520388", "ZX5520415"],
}
# tracking number -> (service, weight kg, destination, events (time, location, status))
_PARCELS: dict[str, tuple[str, float, str, list[tuple[str, str, str]]]] = {
    "ZX4410021": ("express", 2.4, "Ghent", [
        ("2024-03-01 09:10", "Lyon hub", "picked up"),
        ("2024-03-01 22:40", "Paris hub", "in transit"),
        ("2024-03-02 14:05", "Brussels depot", "in transit"),
        ("2024-03-03 10:30", "Ghent", "delivered")]),
    "ZX4410057": ("standard", 7.9, "Utrecht", [
        ("2024-03-02 08:00", "Lyon hub", "picked up"),
        ("2024-03-03 19:15", "Paris hub", "in transit"),
        ("2024-03-05 07:45", "Antwerp depot", "in transit")]),
    "ZX4410093": ("express", 0.8, "Bruges", [
        ("2024-03-04 11:20", "Lyon hub", "picked up"),
        ("2024-03-05 16:50", "Bruges", "delivered")]),
    "ZX4410120": ("standard", 12.5, "Leiden", [
        ("2024-03-04 15:00", "Lyon hub", "picked up"),
        ("2024-03-06 09:30", "Rotterdam depot", "in transit"),
        ("2024-03-07 13:10", "Leiden", "delivered")]),
    "ZX5520310": ("standard", 4.2, "Porto", [
        ("2024-03-01 10:00", "Madrid hub", "picked up"),
        ("2024-03-03 12:30", "Porto", "delivered")]),
    "ZX5520388": ("express", 1.5, "Braga", [
        ("2024-03-02 13:45", "Madrid hub", "picked up"),
        ("2024-03-03 08:15", "Braga", "delivered")]),
    "ZX5520415": ("express", 3.3, "Faro", [
        ("2024-03-01 07:00", "Madrid hub", "picked up"),
        ("2024-03-04 18:20", "Seville depot", "held at customs")]),
}
_RATES = {"standard": (4.5, 0.9), "express": (9.0, 2.1)}  # base EUR, EUR per kg


def _check_number(tracking_number: str) -> str:
    key = tracking_number.strip().upper()
    if key not in _PARCELS:
        if not (key.startswith("ZX") and key[2:].isdigit()):
            raise ValueError(f"{tracking_number!r} is not a tracking number (they look like "
                             "'ZX1234567'); call find_shipments(customer) first")
        raise KeyError(f"no parcel with tracking number {tracking_number!r}")
    return key


def find_shipments(customer: str) -> list[str]:
    """The tracking numbers of a customer's shipments.

    Args:
        customer: The customer's name, e.g. "Harlow Tools".
    """
    return list(_CUSTOMERS.get(customer.strip().lower(), []))


def track(tracking_number: str) -> list[dict[str, Any]]:
    """The tracking events of a parcel, oldest first.

    Args:
        tracking_number: The parcel's tracking number, e.g. "ZX1234567".

    Returns:
        A list of {"time" ("YYYY-MM-DD HH:MM"), "location", "status"}; a delivered parcel's
        last event has status "delivered".
    """
    events = _PARCELS[_check_number(tracking_number)][3]
    return [{"time": t, "location": loc, "status": s} for t, loc, s in events]


def parcel_info(tracking_number: str) -> dict[str, Any]:
    """The parcel's service, weight and destination.

    Args:
        tracking_number: The parcel's tracking number, e.g. "ZX1234567".

    Returns:
        {"tracking_number", "service" ("standard" or "express"), "weight_kg", "destination"}.
    """
    key = _check_number(tracking_number)
    service, weight, destination, _ = _PARCELS[key]
    return {"tracking_number": key, "service": service, "weight_kg": weight,
            "destination": destination}


def shipping_rate(service: str, weight_kg: float) -> float:
    """The price in euros of shipping one parcel.

    Args:
        service: "standard" or "express".
        weight_kg: The parcel's weight in kilograms.
    """
    if service not in _RATES:
        raise ValueError(f"unknown service {service!r}: use 'standard' or 'express'")
    base, per_kg = _RATES[service]
    return round(base + per_kg * weight_kg, 2)


def _hours(events: list[tuple[str, str, str]]) -> float:
    first, last = (dt.datetime.strptime(e[0], "%Y-%m-%d %H:%M") for e in (events[0], events[-1]))
    return (last - first).total_seconds() / 3600


def _delivered(key: str) -> bool:
    return _PARCELS[key][3][-1][2] == "delivered"


_HARLOW_SLOWEST = max((k for k in _CUSTOMERS["harlow tools"] if _delivered(k)),
                      key=lambda k: _hours(_PARCELS[k][3]))

TASKS = (
    UnseenTask(
        "parcel_last_location", "shipping", "easy", ("lookup",),
        "Where was parcel ZX4410057 last scanned? Answer with the location.",
        (track,), (track,),
        Text("Antwerp depot", ("Lyon", "Paris")),
        "final_answer(track('ZX4410057')[-1]['location'])",
    ),
    UnseenTask(
        "parcel_pounds", "shipping", "easy", ("list-vs-lookup", "compute"),
        "How much does parcel ZX4410120 weigh in pounds (1 kg = 2.20462 lb)? Round to 1 "
        "decimal.",
        (find_shipments, parcel_info), (parcel_info,),
        Number(round(12.5 * 2.20462, 1), 0.051),
        "final_answer(round(parcel_info('ZX4410120')['weight_kg'] * 2.20462, 1))",
    ),
    UnseenTask(
        "parcel_transit_hours", "shipping", "medium", ("compute",),
        "How many hours did parcel ZX4410021 take from its first scan to its delivery? Round "
        "to 1 decimal.",
        (track,), (track,),
        Number(round(_hours(_PARCELS["ZX4410021"][3]), 1), 0.051),
        "import datetime as dt\nev = track('ZX4410021')\n"
        "t = [dt.datetime.strptime(e['time'], '%Y-%m-%d %H:%M') for e in (ev[0], ev[-1])]\n"
        "final_answer(round((t[1] - t[0]).total_seconds() / 3600, 1))",
    ),
    UnseenTask(
        "bluebird_undelivered", "shipping", "medium", ("tool-advice", "conditional"),
        "Which of Bluebird Books' shipments are not delivered yet? Answer with the list of "
        "tracking numbers.",
        (find_shipments, track), (find_shipments, track),
        Names(tuple(k for k in _CUSTOMERS["bluebird books"] if not _delivered(k))),
        "nums = find_shipments('Bluebird Books')\n"
        "final_answer([n for n in nums if track(n)[-1]['status'] != 'delivered'])",
    ),
    UnseenTask(
        "bluebird_express_cost", "shipping", "hard", ("chain", "conditional", "compute"),
        "What did shipping all of Bluebird Books' express parcels cost in total, in euros?",
        (find_shipments, parcel_info, shipping_rate),
        (find_shipments, parcel_info, shipping_rate),
        Number(round(sum(round(9.0 + 2.1 * _PARCELS[k][1], 2) for k in _CUSTOMERS["bluebird books"]
                         if _PARCELS[k][0] == "express"), 2), 0.011),
        "total = 0\nfor n in find_shipments('Bluebird Books'):\n    p = parcel_info(n)\n"
        "    if p['service'] == 'express':\n"
        "        total += shipping_rate('express', p['weight_kg'])\nfinal_answer(round(total, 2))",
    ),
    UnseenTask(
        "harlow_slowest", "shipping", "hard", ("chain", "conditional", "compute"),
        "Of Harlow Tools' delivered parcels, which one took longest from first scan to "
        "delivery? Answer with its tracking number.",
        (find_shipments, track), (find_shipments, track),
        Text(_HARLOW_SLOWEST, tuple(k for k in _CUSTOMERS["harlow tools"]
                                    if k != _HARLOW_SLOWEST)),
        "import datetime as dt\nbest, most = None, -1\n"
        "for n in find_shipments('Harlow Tools'):\n    ev = track(n)\n"
        "    if ev[-1]['status'] != 'delivered':\n        continue\n"
        "    t = [dt.datetime.strptime(e['time'], '%Y-%m-%d %H:%M') for e in (ev[0], ev[-1])]\n"
        "    if t[1] - t[0] > dt.timedelta(hours=most):\n"
        "        best, most = n, (t[1] - t[0]).total_seconds() / 3600\nfinal_answer(best)",
    ),
)
