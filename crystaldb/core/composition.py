"""Formulas, element lists and density from the sites of a cell, via pymatgen's Composition.

Isotopes and formulas: a deuterium site is hydrogen in every formula column (reduced, Hill,
anonymous, elements: C3H3O7Sr for a deuterated oxalate, never C3D3O7Sr).  OPTIMADE, whose
filters the API follows, allows only element symbols in chemical formulas, and a user
searching for H-bearing crystals must find the deuterated ones; the isotope is kept per site
(`structures.mass_numbers`) and as the ``deuterated`` flag, and the cell's mass, so its
density, is the isotopes' (isotopes.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Element
from scipy.constants import atomic_mass

from crystaldb.core.isotopes import isotope_mass_excess

# 1 atomic mass unit per cubic angstrom in g/cm^3 (1 kg = 1e3 g, 1 Å^3 = 1e-24 cm^3).
AMU_PER_A3_IN_G_PER_CM3 = atomic_mass * 1e3 / 1e-24


@dataclass(frozen=True, slots=True)
class Formulas:
    """The composition columns of a `structures` row.

    reduced_formula: pymatgen's ``Composition.reduced_formula`` (elements in pymatgen's
        electronegativity order, e.g. C6H6 -> "HC", Fe4O6 -> "Fe2O3").
    hill_formula: Hill order of the full cell (C, then H, then the rest alphabetically; all
        alphabetically when there is no C), no spaces, counts of 1 omitted: "C24H24", "ClNa".
    anonymous_formula: pymatgen's ``Composition.anonymized_formula``: the reduced amounts
        sorted ascending and given letters A, B, C, ... in that order, counts of 1 omitted
        (C6H6 -> "AB", Fe2O3 -> "A2B3", H2O -> "AB2").
    elements: the element symbols, sorted alphabetically.
    weight: mass of the cell in atomic mass units (occupancy-weighted), each site's isotope
        counted with its own mass.
    """

    reduced_formula: str
    hill_formula: str
    anonymous_formula: str
    elements: list[str]
    weight: float


def composition(numbers: np.ndarray, occupancies: np.ndarray | None = None) -> Composition:
    """The cell's composition, occupancy-weighted when occupancies are given."""
    weights = np.ones(len(numbers)) if occupancies is None else np.asarray(occupancies)
    unique, inverse = np.unique(numbers, return_inverse=True)
    amounts = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(unique))
    amounts = np.round(amounts, 6)  # 0.9 * 4 + 40 is 43.6, not 43.599999999999994
    return Composition(
        {Element.from_Z(int(z)).symbol: float(n) for z, n in zip(unique, amounts, strict=True)}
    )


def formulas(
    numbers: np.ndarray,
    occupancies: np.ndarray | None = None,
    mass_numbers: np.ndarray | None = None,
) -> Formulas:
    """All formula columns at once, from one Composition; isotopes change the weight only."""
    comp = composition(numbers, occupancies)
    return Formulas(
        reduced_formula=comp.reduced_formula,
        hill_formula=comp.hill_formula.replace(" ", ""),
        anonymous_formula=comp.anonymized_formula,
        elements=sorted(el.symbol for el in comp.elements),
        weight=float(comp.weight) + isotope_mass_excess(numbers, mass_numbers, occupancies),
    )


def density(weight_amu: float, volume_a3: float) -> float:
    """Density in g/cm^3 from a cell mass in amu and a volume in cubic angstrom."""
    return weight_amu * AMU_PER_A3_IN_G_PER_CM3 / volume_a3


# How far a non-integer amount of a formula sum may be from the cell's, per formula unit:
# sums are written rounded (H0.67 for 2/3, or H7.3 for 22/3).  Integer amounts are exact.
FORMULA_SUM_ROUNDING = 0.05
_INTEGER_AMOUNT = 1e-3


def formula_sum_differs(declared: str, cell: Composition) -> bool:
    """Does a file's formula sum (e.g. "C6 H12 O6") disagree with the cell's composition?

    Compared as ratios, so the number of formula units in the cell (Z, a fractional Z')
    never matters: they agree when one scale k makes every declared amount times k the
    cell's amount, within the rounding of the declared amount.  Isotopes count as their
    element (a sum with D matches H sites).  An unreadable sum is not a disagreement.
    """
    stated = _amounts_by_element(declared)
    if stated is None:
        return False
    found = _element_amounts(cell)
    if set(stated) != set(found):
        return True
    low, high = 0.0, float("inf")
    for element, amount in stated.items():
        slack = _INTEGER_AMOUNT if float(amount).is_integer() else FORMULA_SUM_ROUNDING
        low = max(low, found[element] / (amount + slack))
        if amount > slack:
            high = min(high, found[element] / (amount - slack))
    return low > high


def _amounts_by_element(formula: str) -> dict[str, float] | None:
    """A formula sum's amounts by element symbol (isotopes merged), None if unreadable."""
    text = formula.strip().strip("'\"").strip()
    if text in ("", "?", "."):
        return None
    try:
        amounts = _element_amounts(Composition(text))
    except Exception:  # pymatgen raises ValueError, KeyError, ... on what is no formula
        return None
    return amounts if amounts and all(n > 0 for n in amounts.values()) else None


def _element_amounts(comp: Composition) -> dict[str, float]:
    """Amounts by element symbol, pymatgen's named isotopes (D, T) counted as hydrogen."""
    amounts: defaultdict[str, float] = defaultdict(float)
    for element, amount in comp.items():
        amounts[Element.from_Z(element.Z).symbol] += float(amount)
    return amounts
