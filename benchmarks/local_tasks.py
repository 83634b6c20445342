"""Small tool-using tasks for measuring an agent on the embedded local model.

Each task gives the model one or two host tools (defined here, deterministic, no network),
asks for something that needs both calling them and a little computation, and has a checker
that accepts any reasonable form of the right answer (a number within tolerance, a string
containing the expected word). The tasks are deliberately unlike the system prompt's example.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeact_kernel.terminal.demo import DEMO_TASK, get_population, search_cities

Checker = Callable[[Any], bool]


@dataclass(frozen=True)
class BenchTask:
    """A task: its prompt, the host tools it needs (each must be called), and a checker."""

    name: str
    prompt: str
    tools: tuple[Callable[..., Any], ...]
    check: Checker
    expected: str  # for reports: what a correct answer looks like


# ---- checkers ------------------------------------------------------------------------------


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").replace("%", "").strip())
        except ValueError:
            return None
    if isinstance(value, dict) and len(value) == 1:
        return _as_number(next(iter(value.values())))
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _as_number(value[0])
    # numpy scalars and the like
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def number(expected: float, tol: float = 0.01) -> Checker:
    """A number within ``tol`` (absolute) of ``expected``, in any of the usual forms."""

    def check(value: Any) -> bool:
        got = _as_number(value)
        return got is not None and math.isclose(got, expected, abs_tol=tol)

    return check


def text(expected: str) -> Checker:
    """A string (or one-element container) that contains ``expected``, ignoring case."""

    def check(value: Any) -> bool:
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        return isinstance(value, str) and expected.lower() in value.lower()

    return check


def _check_demo(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    pops = [get_population(c) for c in search_cities("France")]
    stds = (statistics.stdev(pops), statistics.pstdev(pops))
    total, std = _as_number(value.get("total")), _as_number(value.get("std"))
    return (total == sum(pops) and std is not None
            and any(math.isclose(std, s, rel_tol=1e-3) for s in stds))


# ---- host tools --------------------------------------------------------------------------

_TEMPERATURES = {"oslo": 4.5, "madrid": 18.2, "cairo": 27.9, "lima": 19.4, "reykjavik": -1.0}


def get_temperature(city: str) -> float:
    """Current air temperature of a city, in degrees Celsius.

    Args:
        city: The city's name, e.g. "Oslo".
    """
    key = city.strip().lower()
    if key not in _TEMPERATURES:
        raise KeyError(f"no weather station for {city!r}")
    return _TEMPERATURES[key]


_EXPENSES: list[dict[str, Any]] = [
    {"item": "train ticket", "amount": 120.0, "currency": "CHF"},
    {"item": "hotel", "amount": 310.0, "currency": "EUR"},
    {"item": "dinner", "amount": 8500.0, "currency": "JPY"},
    {"item": "taxi", "amount": 45.0, "currency": "USD"},
]
_EUR_PER_UNIT = {"EUR": 1.0, "CHF": 1.05, "JPY": 0.0062, "USD": 0.92}


def list_expenses() -> list[dict[str, Any]]:
    """The expenses of the current trip.

    Returns:
        A list of dicts with keys "item", "amount" and "currency" (ISO code).
    """
    return [dict(e) for e in _EXPENSES]


def eur_rate(currency: str) -> float:
    """How many euros one unit of a currency is worth.

    Args:
        currency: ISO currency code, e.g. "USD".
    """
    code = currency.strip().upper()
    if code not in _EUR_PER_UNIT:
        raise KeyError(f"unknown currency {currency!r}")
    return _EUR_PER_UNIT[code]


_PRODUCTS: list[dict[str, Any]] = [
    {"name": "stapler", "price": 12.5, "stock": 40},
    {"name": "paper ream", "price": 4.2, "stock": 250},
    {"name": "desk lamp", "price": 32.0, "stock": 12},
    {"name": "pen box", "price": 6.75, "stock": 80},
]


def list_products() -> list[dict[str, Any]]:
    """All products in the warehouse.

    Returns:
        A list of dicts with keys "name", "price" (euros per unit) and "stock" (units).
    """
    return [dict(p) for p in _PRODUCTS]


_STAFF = {
    "engineering": {"Alice": 5200, "Bilal": 4800, "Chen": 6100, "Dana": 5500},
    "sales": {"Emil": 3900, "Farah": 4300},
}


def list_employees(department: str) -> list[str]:
    """Names of the employees of a department.

    Args:
        department: The department's name, e.g. "Sales".
    """
    return sorted(_STAFF.get(department.strip().lower(), {}))


def get_salary(name: str) -> int:
    """Monthly salary of an employee, in euros.

    Args:
        name: The employee's name, as returned by list_employees.
    """
    for people in _STAFF.values():
        if name in people:
            return people[name]
    raise KeyError(f"no employee named {name!r}")


_ORDERS = {
    "C42": [72.0, 140.5, 99.99, 310.0, 100.0, 18.25, 205.0],
    "C7": [15.0, 260.0],
}


def get_orders(customer_id: str) -> list[dict[str, Any]]:
    """The orders of a customer.

    Args:
        customer_id: The customer's id, e.g. "C7".

    Returns:
        A list of dicts with keys "order_id" and "total" (euros).
    """
    totals = _ORDERS.get(customer_id.strip().upper(), [])
    return [{"order_id": f"{customer_id}-{n}", "total": t} for n, t in enumerate(totals, 1)]


_FRENCH = {"the": "le", "cat": "chat", "eats": "mange", "fish": "poisson", "dog": "chien"}


def translate_word(word: str) -> str:
    """Translate one English word into French.

    Args:
        word: A single English word.
    """
    key = word.strip().lower()
    if key not in _FRENCH:
        raise KeyError(f"no translation for {word!r}")
    return _FRENCH[key]


_PRICES = {"ACME": [50.0, 51.2, 49.8, 53.1, 55.4, 57.5], "GLOBEX": [20.0, 19.5, 18.0]}


def get_prices(ticker: str) -> list[float]:
    """Daily closing prices of a stock, oldest first.

    Args:
        ticker: The stock's ticker symbol, e.g. "GLOBEX".
    """
    return list(_PRICES.get(ticker.strip().upper(), []))


_RAIN = [3.2, 7.8, 12.0, 0.0, 5.0, 6.1, 1.4]


def get_forecast(city: str) -> list[dict[str, Any]]:
    """The 7-day rain forecast of a city.

    Args:
        city: The city's name.

    Returns:
        A list of dicts with keys "day" (1 to 7) and "rain_mm" (millimetres of rain).
    """
    shift = len(city.strip()) % 3 if city.strip().lower() != "bergen" else 0
    return [{"day": d + 1, "rain_mm": _RAIN[(d + shift) % 7]} for d in range(7)]


_BIRTHS = {"Ana": "1990-07-14", "Ben": "1987-11-02", "Chloe": "1988-01-30"}


def get_birth_date(name: str) -> str:
    """A person's date of birth as "YYYY-MM-DD".

    Args:
        name: The person's first name.
    """
    if name.strip() not in _BIRTHS:
        raise KeyError(f"no record for {name!r}")
    return _BIRTHS[name.strip()]


_RECIPES = {"pancakes": {"flour": 250, "milk": 500, "egg": 110, "butter": 30}}


def get_recipe(dish: str) -> dict[str, int]:
    """Ingredients of a dish for 4 servings, in grams.

    Args:
        dish: The dish's name, e.g. "pancakes".
    """
    key = dish.strip().lower()
    if key not in _RECIPES:
        raise KeyError(f"no recipe for {dish!r}")
    return dict(_RECIPES[key])


_BOOKS = {
    "ursula k. le guin": [
        {"title": "The Dispossessed", "year": 1974},
        {"title": "A Wizard of Earthsea", "year": 1968},
        {"title": "The Left Hand of Darkness", "year": 1969},
    ],
}


def search_books(author: str) -> list[dict[str, Any]]:
    """Books by an author.

    Args:
        author: The author's full name.

    Returns:
        A list of dicts with keys "title" and "year" (first publication).
    """
    return [dict(b) for b in _BOOKS.get(author.strip().lower(), [])]


# ---- the task set ------------------------------------------------------------------------


def _expected_expenses() -> float:
    return round(float(sum(e["amount"] * _EUR_PER_UNIT[e["currency"]] for e in _EXPENSES)), 2)


def _oldest() -> str:
    return min(_BIRTHS, key=lambda n: dt.date.fromisoformat(_BIRTHS[n]))


TASKS: tuple[BenchTask, ...] = (
    BenchTask("demo_cities", DEMO_TASK, (search_cities, get_population), _check_demo,
              "{'total': 4350139, 'std': 715307.58 (or the population std)}"),
    BenchTask("largest_japanese_city",
              "Which city of Japan has the largest population? Use search_cities and "
              "get_population, and answer with the city's name.",
              (search_cities, get_population), text("Tokyo"), "Tokyo"),
    BenchTask("warmest_city",
              "Which of Oslo, Madrid, Cairo and Lima is the warmest right now? "
              "Answer with the city's name.",
              (get_temperature,), text("Cairo"), "Cairo"),
    BenchTask("expenses_in_euros",
              "What is the total of the trip's expenses in euros, rounded to 2 decimals?",
              (list_expenses, eur_rate), number(_expected_expenses(), 0.02),
              str(_expected_expenses())),
    BenchTask("stock_value",
              "What is the total value of the warehouse stock (price times stock, summed over "
              "all products), in euros?",
              (list_products,), number(sum(p["price"] * p["stock"] for p in _PRODUCTS)),
              str(sum(p["price"] * p["stock"] for p in _PRODUCTS))),
    BenchTask("average_salary",
              "What is the average monthly salary of the Engineering department?",
              (list_employees, get_salary),
              number(statistics.mean(_STAFF["engineering"].values())),
              str(statistics.mean(_STAFF["engineering"].values()))),
    BenchTask("orders_over_100",
              "How many orders of customer C42 have a total strictly greater than 100 euros?",
              (get_orders,), number(sum(t > 100 for t in _ORDERS["C42"]), 0),
              str(sum(t > 100 for t in _ORDERS["C42"]))),
    BenchTask("translate_sentence",
              "Translate the sentence 'the cat eats fish' into French word by word with "
              "translate_word, and answer with the French words joined by single spaces.",
              (translate_word,), text("le chat mange poisson"), "le chat mange poisson"),
    BenchTask("price_change",
              "By what percentage did the ACME stock change from its first to its last "
              "closing price? Answer with a number rounded to 1 decimal.",
              (get_prices,), number(15.0, 0.051), "15.0"),
    BenchTask("rainy_days",
              "On how many days of the Bergen forecast is the rain above 5 mm?",
              (get_forecast,), number(sum(r > 5 for r in _RAIN), 0),
              str(sum(r > 5 for r in _RAIN))),
    BenchTask("oldest_person",
              "Who is the oldest of Ana, Ben and Chloe? Answer with the name.",
              (get_birth_date,), text(_oldest()), _oldest()),
    BenchTask("scaled_recipe",
              "How many grams of flour are needed to make pancakes for 10 servings?",
              (get_recipe,), number(250 * 10 / 4, 0.5), "625"),
    BenchTask("earliest_book",
              "What is the title of the earliest book by Ursula K. Le Guin?",
              (search_books,), text("A Wizard of Earthsea"), "A Wizard of Earthsea"),
)
