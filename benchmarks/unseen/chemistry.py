"""Chemistry and units: formulas by name, molar masses, element masses, densities, units."""

from __future__ import annotations

import re

from .common import Number, Text, UnseenTask

_FORMULAS = {
    "water": "H2O", "table salt": "NaCl", "glucose": "C6H12O6", "ethanol": "C2H6O",
    "baking soda": "NaHCO3", "caffeine": "C8H10N4O2", "urea": "CH4N2O", "aspirin": "C9H8O4",
}
_MOLAR = {"H2O": 18.015, "NaCl": 58.44, "C6H12O6": 180.156, "C2H6O": 46.069,
          "NaHCO3": 84.007}
_ELEMENTS = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "Na": 22.99, "Cl": 35.45}
_DENSITY = {"water": 1.0, "ethanol": 0.789, "glycerol": 1.261, "olive oil": 0.911,
            "mercury": 13.534}
_LENGTH_M = {"m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048,
             "mi": 1609.344}


def formula_of(compound: str) -> str:
    """The chemical formula of a compound given by its common name, e.g. "water" -> "H2O".

    Args:
        compound: The compound's common name.
    """
    key = compound.strip().lower()
    if key not in _FORMULAS:
        raise KeyError(f"no formula known for {compound!r}")
    return _FORMULAS[key]


def molar_mass(formula: str) -> float:
    """Molar mass of a compound in g/mol, from a table of common compounds.

    Args:
        formula: The chemical formula, e.g. "H2O" (not the compound's name).
    """
    key = formula.strip()
    if key.lower() in _FORMULAS:
        raise ValueError(f"molar_mass takes a chemical formula such as 'H2O', not a name; "
                         f"call formula_of({key!r}) first")
    if key not in _MOLAR:
        raise KeyError(f"{formula!r} is not in the molar mass table (its formulas are the "
                       "ones formula_of(name) returns); otherwise add up the masses of its "
                       "elements with element_mass(symbol)")
    return _MOLAR[key]


def element_mass(symbol: str) -> float:
    """Standard atomic mass of a chemical element in g/mol.

    Args:
        symbol: The element's symbol, e.g. "C" or "Na".
    """
    key = symbol.strip()
    if key not in _ELEMENTS:
        raise KeyError(f"unknown element symbol {symbol!r}")
    return _ELEMENTS[key]


def density(substance: str) -> float:
    """Density of a liquid at 20 degrees Celsius, in grams per millilitre.

    Args:
        substance: The liquid's common name, e.g. "ethanol".
    """
    key = substance.strip().lower()
    if key not in _DENSITY:
        raise KeyError(f"no density known for {substance!r}")
    return _DENSITY[key]


def convert_length(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a length between units.

    Args:
        value: The length in from_unit.
        from_unit: One of "m", "km", "cm", "mm", "in", "ft", "mi".
        to_unit: One of the same unit symbols.
    """
    for unit in (from_unit, to_unit):
        if unit not in _LENGTH_M:
            raise ValueError(f"unknown unit {unit!r}: use one of the symbols "
                             f"{', '.join(repr(u) for u in _LENGTH_M)}")
    return value * _LENGTH_M[from_unit] / _LENGTH_M[to_unit]


def _mass_from_elements(formula: str) -> float:
    total = 0.0
    for symbol, count in re.findall(r"([A-Z][a-z]?)(\d*)", formula):
        total += _ELEMENTS[symbol] * (int(count) if count else 1)
    return total


_HEAVIER = max(("ethanol", 1.0 * _DENSITY["ethanol"]), ("glycerol", 0.7 * _DENSITY["glycerol"]),
               key=lambda p: p[1])[0]

TASKS = (
    UnseenTask(
        "salt_grams", "chemistry", "easy", ("compute",),
        "How many grams do 2.5 moles of NaCl weigh? Round to 2 decimals.",
        (molar_mass,), (molar_mass,),
        Number(round(2.5 * _MOLAR["NaCl"], 2), 0.011),
        "final_answer(round(2.5 * molar_mass('NaCl'), 2))",
    ),
    UnseenTask(
        "marathon_miles", "chemistry", "easy", ("tool-advice", "compute"),
        "A marathon is 42.195 kilometres. How many miles is that? Round to 2 decimals.",
        (convert_length,), (convert_length,),
        Number(round(42195 / 1609.344, 2), 0.011),
        "final_answer(round(convert_length(42.195, 'km', 'mi'), 2))",
    ),
    UnseenTask(
        "glucose_grams", "chemistry", "medium", ("tool-advice", "compute"),
        "What is the mass in grams of 3 moles of glucose? Round to 1 decimal.",
        (formula_of, molar_mass), (formula_of, molar_mass),
        Number(round(3 * _MOLAR["C6H12O6"], 1), 0.051),
        "final_answer(round(3 * molar_mass(formula_of('glucose')), 1))",
    ),
    UnseenTask(
        "heavier_liquid", "chemistry", "medium", ("conditional", "compute"),
        "Which weighs more: 1 litre of ethanol or 0.7 litre of glycerol? Answer with the "
        "liquid's name.",
        (density,), (density,),
        Text(_HEAVIER, tuple({"ethanol", "glycerol"} - {_HEAVIER})),
        "e, g = 1000 * density('ethanol'), 700 * density('glycerol')\n"
        "final_answer('ethanol' if e > g else 'glycerol')",
    ),
    UnseenTask(
        "ethanol_moles", "chemistry", "hard", ("chain", "compute"),
        "How many moles of ethanol are in 250 millilitres of ethanol? Round to 2 decimals.",
        (formula_of, molar_mass, density), (formula_of, molar_mass, density),
        Number(round(250 * _DENSITY["ethanol"] / _MOLAR["C2H6O"], 2), 0.011),
        "grams = 250 * density('ethanol')\n"
        "final_answer(round(grams / molar_mass(formula_of('ethanol')), 2))",
    ),
    UnseenTask(
        "caffeine_mass", "chemistry", "hard", ("chain", "tool-advice", "compute"),
        "What is the molar mass of caffeine in g/mol? Round to 2 decimals.",
        (formula_of, molar_mass, element_mass), (formula_of, element_mass),
        Number(round(_mass_from_elements(_FORMULAS["caffeine"]), 2), 0.011),
        "import re\nf = formula_of('caffeine')\n"
        "total = sum(element_mass(s) * (int(n) if n else 1)\n"
        "            for s, n in re.findall(r'([A-Z][a-z]?)(\\d*)', f))\n"
        "final_answer(round(total, 2))",
    ),
)
