"""Isotopes of sites: deuterium and tritium as the readers find them, with their atomic masses.

Every site has a mass number, 0 meaning the natural isotope mix of its element (what the
atomic number alone says).  A structure stores them (`structures.mass_numbers`) only where
some site is not natural; a site marked ``D`` in a CIF is hydrogen (atomic number 1) with
mass number 2, and ``T`` is mass number 3.  Where the readers find isotopes:

- CIF through gemmi: a site whose element gemmi reads as ``D`` (gemmi knows no ``T``: such
  a block goes to pymatgen, which does);
- CIF through pymatgen, and pymatgen JSON: pymatgen's named isotopes (``Element("D")``,
  ``Element("T")``: hydrogen with ``A`` 2 and 3); pymatgen's own ``Structure.as_dict``
  writes them as ``H``, so its JSON rarely carries one;
- extended XYZ and ASE JSON: a ``masses`` array, a site of Z = 1 whose mass is within
  0.01 u of deuterium's or tritium's.  POSCAR files carry no masses.

Masses are CODATA's (through scipy): the nucleus plus its electron.  pymatgen's named
isotopes carry the nuclear masses (2.013553 u for D, an electron short of the atom), so they
are not used for the density.
"""

from __future__ import annotations

import functools

import numpy as np
from pymatgen.core import Element
from scipy.constants import physical_constants

NATURAL = 0
# Symbols of isotopes in structure files: (atomic number, mass number).
ISOTOPE_SYMBOLS: dict[str, tuple[int, int]] = {"D": (1, 2), "T": (1, 3)}
# How close an explicit site mass (ASE) must be to an isotope's to be read as that isotope.
MASS_MATCH = 0.01  # u


# functools.cache here and on _named_isotopes, not an Lru: both take no argument (one entry,
# no bound needed) and are pure; a race on the first call builds the same value twice.
@functools.cache
def isotope_masses() -> dict[tuple[int, int], float]:
    """Atomic masses (u) of the isotopes crystaldb recognises, by (atomic, mass number)."""
    electron = physical_constants["electron mass in u"][0]
    return {
        (1, 2): physical_constants["deuteron mass in u"][0] + electron,
        (1, 3): physical_constants["triton mass in u"][0] + electron,
    }


def mass_number_of_symbol(symbol: str) -> int:
    """2 for D, 3 for T, NATURAL for any element symbol, as gemmi names elements."""
    return ISOTOPE_SYMBOLS.get(symbol, (0, NATURAL))[1]


def mass_number_of_element(element: Element) -> int:
    """The A of pymatgen's named isotopes (D, T), NATURAL for a plain element."""
    return int(element.A) if element in _named_isotopes() else NATURAL


@functools.cache
def _named_isotopes() -> tuple[Element, ...]:
    """pymatgen builds this tuple on every access; once is enough."""
    return tuple(Element.named_isotopes)


def mass_numbers_from_masses(numbers: np.ndarray, masses: np.ndarray) -> np.ndarray | None:
    """Mass numbers from explicit site masses (ASE arrays); None when every site is natural."""
    found = np.zeros(len(numbers), dtype=np.int64)
    for (z, a), mass in isotope_masses().items():
        found[(numbers == z) & (np.abs(masses - mass) <= MASS_MATCH)] = a
    return mass_numbers_or_none(found)


def mass_numbers_or_none(mass_numbers: np.ndarray) -> np.ndarray | None:
    """Drop the array when every site is natural, as the table stores it (NULL)."""
    return None if not np.any(mass_numbers) else mass_numbers


def site_masses(numbers: np.ndarray, mass_numbers: np.ndarray | None) -> np.ndarray:
    """Each site's mass in u: its isotope's where it has one, else the natural mix's."""
    masses = np.array([float(Element.from_Z(int(z)).atomic_mass) for z in numbers])
    if mass_numbers is not None:
        for (z, a), mass in isotope_masses().items():
            masses[(numbers == z) & (mass_numbers == a)] = mass
    return masses


def isotope_mass_excess(
    numbers: np.ndarray, mass_numbers: np.ndarray | None, occupancies: np.ndarray | None = None
) -> float:
    """What the isotopes add to the cell's natural-mix mass (u), occupancy-weighted."""
    if mass_numbers is None:
        return 0.0
    isotopic = np.flatnonzero(mass_numbers != NATURAL)
    natural = site_masses(numbers[isotopic], None)
    actual = site_masses(numbers[isotopic], mass_numbers[isotopic])
    weights = np.ones(len(isotopic)) if occupancies is None else occupancies[isotopic]
    return float(np.sum(weights * (actual - natural)))


def is_deuterated(numbers: np.ndarray, mass_numbers: np.ndarray | None) -> bool:
    """Some hydrogen site is deuterium."""
    return mass_numbers is not None and bool(np.any((numbers == 1) & (mass_numbers == 2)))
