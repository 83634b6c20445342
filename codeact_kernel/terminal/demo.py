"""The demo task of the README: cities and populations, served by host-side tools."""

from __future__ import annotations

from ..tools.tool import Tool, tool

DEMO_TASK = (
    "Find the cities of France with search_cities, get the population of each with "
    "get_population, and give the total population and the standard deviation of the "
    "populations as a dict with keys 'total' and 'std'."
)

_CITIES = {
    "france": ["Paris", "Marseille", "Lyon", "Toulouse", "Nice"],
    "japan": ["Tokyo", "Osaka", "Nagoya"],
    "brazil": ["Sao Paulo", "Rio de Janeiro", "Brasilia", "Salvador"],
}
_POPULATION = {
    "paris": 2_102_650, "marseille": 873_076, "lyon": 522_250, "toulouse": 504_078,
    "nice": 348_085, "tokyo": 13_960_000, "osaka": 2_750_000, "nagoya": 2_320_000,
    "sao paulo": 11_450_000, "rio de janeiro": 6_211_000, "brasilia": 2_817_000,
    "salvador": 2_418_000,
}


def search_cities(country: str) -> list[str]:
    """List the main cities of a country.

    Args:
        country: The country's English name, e.g. "France".
    """
    return list(_CITIES.get(country.strip().lower(), []))


def get_population(city: str) -> int:
    """Return the population of a city.

    Args:
        city: The city's name, as returned by search_cities.
    """
    key = city.strip().lower()
    if key not in _POPULATION:
        raise KeyError(f"unknown city {city!r}; use a name returned by search_cities")
    return _POPULATION[key]


def demo_tools() -> list[Tool]:
    return [tool(search_cities), tool(get_population)]
