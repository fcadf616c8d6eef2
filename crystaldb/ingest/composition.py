"""Formulas, element lists and density from the sites of a cell, via pymatgen's Composition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Element
from scipy.constants import atomic_mass

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
    weight: mass of the cell in atomic mass units (occupancy-weighted).
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


def formulas(numbers: np.ndarray, occupancies: np.ndarray | None = None) -> Formulas:
    """All formula columns at once, from one Composition."""
    comp = composition(numbers, occupancies)
    return Formulas(
        reduced_formula=comp.reduced_formula,
        hill_formula=comp.hill_formula.replace(" ", ""),
        anonymous_formula=comp.anonymized_formula,
        elements=sorted(el.symbol for el in comp.elements),
        weight=float(comp.weight),
    )


def density(weight_amu: float, volume_a3: float) -> float:
    """Density in g/cm^3 from a cell mass in amu and a volume in cubic angstrom."""
    return weight_amu * AMU_PER_A3_IN_G_PER_CM3 / volume_a3
