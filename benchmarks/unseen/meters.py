"""Building utility meters: meters per building, paged cumulative readings, tariffs."""

from __future__ import annotations

from typing import Any

from .common import Number, Text, UnseenTask, paginate

_METERS = {
    "annex": [("M-101", "electricity", 0), ("M-102", "electricity", 1), ("M-103", "gas", 0),
              ("M-104", "water", 0)],
    "main hall": [("M-201", "electricity", 0), ("M-202", "gas", 0), ("M-203", "water", 1),
                  ("M-204", "electricity", 2), ("M-205", "electricity", 3)],
}
_DATES = [f"2024-05-{d:02d}" for d in range(1, 11)]
# Cumulative meter values on 2024-05-01 .. 2024-05-10 (kWh for electricity and gas, m3 water).
_VALUES = {
    "M-101": [1200.0, 1231.5, 1259.0, 1290.2, 1318.8, 1344.1, 1371.9, 1403.3, 1430.0, 1462.4],
    "M-102": [880.0, 896.2, 915.0, 929.4, 951.7, 970.1, 986.0, 1009.8, 1027.5, 1040.3],
    "M-103": [5310.0, 5362.0, 5410.5, 5455.0, 5512.8, 5560.1, 5603.3, 5650.0, 5698.2, 5741.6],
    "M-104": [312.4, 313.9, 315.1, 316.8, 318.0, 319.6, 321.0, 322.7, 324.1, 325.5],
    "M-201": [2040.0, 2101.7, 2160.3, 2222.0, 2279.9, 2341.2, 2400.6, 2459.9, 2521.4, 2580.0],
    "M-202": [7720.0, 7801.5, 7870.2, 7950.0, 8031.9, 8100.4, 8177.7, 8250.1, 8329.0, 8401.3],
    "M-203": [640.0, 642.6, 645.1, 647.9, 650.2, 652.8, 655.5, 657.9, 660.4, 663.0],
    "M-204": [150.0, 171.2, 190.9, 214.0, 233.3, 255.9, 276.1, 297.7, 318.8, 340.2],
    "M-205": [990.0, 1002.4, 1013.0, 1025.9, 1037.7, 1049.0, 1061.8, 1072.6, 1084.9, 1096.0],
}
_TARIFFS = {"electricity": 0.28, "gas": 0.09, "water": 2.1}  # euros per kWh / m3


def list_meters(building: str) -> list[dict[str, Any]]:
    """The meters of a building.

    Args:
        building: The building's name, e.g. "Main Hall".

    Returns:
        A list of {"meter_id", "kind" ("electricity", "gas" or "water"), "floor"}.
    """
    key = building.strip().lower()
    if key not in _METERS:
        raise KeyError(f"no building named {building!r}; the buildings are Annex and "
                       "Main Hall")
    return [{"meter_id": m, "kind": k, "floor": f} for m, k, f in _METERS[key]]


def meter_readings(meter_id: str, page_token: str = "") -> dict[str, Any]:
    """One page of a meter's daily readings, oldest first (4 per page). Readings are the
    meter's cumulative counter, so use over a period is last reading minus first.

    Args:
        meter_id: The meter's id, e.g. "M-204".
        page_token: '' for the first page, then the previous page's "next_page".

    Returns:
        {"readings": [{"date" ("YYYY-MM-DD"), "value"}, ...],
         "next_page": a token for the next page, or None on the last page}.
    """
    key = meter_id.strip().upper()
    if key not in _VALUES:
        raise ValueError(f"unknown meter id {meter_id!r}: ids look like 'M-204'; call "
                         "list_meters(building) first")
    rows = [{"date": d, "value": v} for d, v in zip(_DATES, _VALUES[key], strict=True)]
    return paginate(rows, page_token, 4, key, "readings")


def tariff(kind: str) -> float:
    """The price of one unit of a utility, in euros (per kWh for electricity and gas, per
    cubic metre for water).

    Args:
        kind: "electricity", "gas" or "water".
    """
    key = kind.strip().lower()
    if key not in _TARIFFS:
        raise KeyError(f"no tariff for {kind!r}; the kinds are electricity, gas and water")
    return _TARIFFS[key]


def _use(meter: str, days: int = 10) -> float:
    values = _VALUES[meter][:days]
    return values[-1] - values[0]


_M102 = _VALUES["M-102"]
_M102_STEPS = [(b - a, d) for a, b, d in zip(_M102, _M102[1:], _DATES[1:], strict=False)]
_M102_BIGGEST_DAY = max(_M102_STEPS)[1]
_ANNEX_ELEC = sum(_use(m) for m, k, _ in _METERS["annex"] if k == "electricity")

TASKS = (
    UnseenTask(
        "main_hall_meter_count", "meters", "easy", ("lookup", "compute"),
        "How many electricity meters does the Main Hall building have?",
        (list_meters,), (list_meters,),
        Number(sum(k == "electricity" for _, k, _ in _METERS["main hall"]), 0),
        "final_answer(sum(1 for m in list_meters('Main Hall') if m['kind'] == 'electricity'))",
    ),
    UnseenTask(
        "reading_on_date", "meters", "easy", ("lookup",),
        "What did meter M-203 read on 2024-05-03?",
        (list_meters, meter_readings), (meter_readings,),
        Number(_VALUES["M-203"][2]),
        "rows = meter_readings('M-203')['readings']\n"
        "final_answer([r['value'] for r in rows if r['date'] == '2024-05-03'][0])",
    ),
    UnseenTask(
        "water_first_days_cost", "meters", "medium", ("compute",),
        "What did the water measured by meter M-104 from 2024-05-01 to 2024-05-04 cost, in "
        "euros (last reading minus first, times the water tariff)? Round to 2 decimals.",
        (meter_readings, tariff), (meter_readings, tariff),
        Number(round(_use("M-104", 4) * _TARIFFS["water"], 2), 0.011),
        "r = meter_readings('M-104')['readings']\n"
        "final_answer(round((r[-1]['value'] - r[0]['value']) * tariff('water'), 2))",
    ),
    UnseenTask(
        "annex_gas_first_reading", "meters", "medium", ("tool-advice", "conditional"),
        "What was the first reading of the Annex building's gas meter?",
        (list_meters, meter_readings), (list_meters, meter_readings),
        Number(_VALUES["M-103"][0]),
        "gas = [m for m in list_meters('Annex') if m['kind'] == 'gas'][0]\n"
        "final_answer(meter_readings(gas['meter_id'])['readings'][0]['value'])",
    ),
    UnseenTask(
        "biggest_day_m102", "meters", "hard", ("pagination", "compute"),
        "On which date did meter M-102 record its largest increase over the day before? "
        "Answer with the date as YYYY-MM-DD.",
        (meter_readings,), (meter_readings,),
        Text(_M102_BIGGEST_DAY, tuple(d for d in _DATES if d != _M102_BIGGEST_DAY)),
        "rows, tok = [], ''\nwhile tok is not None:\n    p = meter_readings('M-102', tok)\n"
        "    rows += p['readings']\n    tok = p['next_page']\n"
        "steps = [(b['value'] - a['value'], b['date']) for a, b in zip(rows, rows[1:])]\n"
        "final_answer(max(steps)[1])",
    ),
    UnseenTask(
        "annex_electricity_cost", "meters", "hard", ("chain", "pagination", "compute"),
        "What did all the electricity used in the Annex building over the readings cost, in "
        "euros (for each electricity meter, last reading minus first; summed; times the "
        "tariff)? Round to 2 decimals.",
        (list_meters, meter_readings, tariff), (list_meters, meter_readings, tariff),
        Number(round(_ANNEX_ELEC * _TARIFFS["electricity"], 2), 0.011),
        "used = 0\nfor m in list_meters('Annex'):\n    if m['kind'] != 'electricity':\n"
        "        continue\n    rows, tok = [], ''\n    while tok is not None:\n"
        "        p = meter_readings(m['meter_id'], tok)\n        rows += p['readings']\n"
        "        tok = p['next_page']\n    used += rows[-1]['value'] - rows[0]['value']\n"
        "final_answer(round(used * tariff('electricity'), 2))",
    ),
)
