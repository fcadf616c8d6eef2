"""What a CIF states about its own symmetry, checked against the operations it lists.

A CIF names its space group (H-M symbol, Hall symbol, International Tables number) and lists
the symmetry operations (``_symmetry_equiv_pos_as_xyz`` or
``_space_group_symop_operation_xyz``); gemmi and pymatgen build the cell from the listed
operations.  When those contradict the name, the stored cell is what the operations make
and the name was wrong, or the reverse: either way the record is flagged
``symops_contradict_symbol``.  They contradict when a name is given and the operations,
with the identity added where the list leaves it out, are no group (COD 2005206: four
operations whose products are not among them; COD 2009397: an "R 3" list with y,-x,z
where -x+y,-x,z belongs), or make a group of another space-group type than the one named
(COD 1100978: "Cc" with the operations of Pc, the centring missing).

Types, not settings, are compared: a short symbol such as "Pc" or "Fddd" names one
setting in the tables while the file's operations may be another setting or origin choice
of the same group, which is no contradiction.  The group of the operations is found with
gemmi's table (``find_spacegroup_by_ops``), or where its setting is not tabulated, after
checking that they are closed, with spglib (``get_spacegroup_type_from_symmetry``); names
with gemmi
(``find_spacegroup_by_name``, ``symops_from_hall``).  A name neither can read (e.g.
"P 42/m m c S") and unreadable operations give no verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import gemmi
import numpy as np
import spglib

_IDENTITY = "x,y,z"
_MAX_ENTRY = 4  # largest rotation matrix entry is_closed encodes


@dataclass(frozen=True, slots=True)
class DeclaredSymmetry:
    """A block's symmetry statements, as written (empty or None where absent)."""

    operations: tuple[str, ...] = ()
    hm: str = ""
    hall: str = ""
    number: int | None = None


class NotAGroup(Exception):
    """The listed operations are not closed under composition."""


def symops_contradict_symbol(declared: DeclaredSymmetry, lattice: np.ndarray) -> bool:
    """Do the listed operations contradict the space group the block names?"""
    named = named_numbers(declared)
    if not declared.operations or not named:
        return False
    try:
        found = operations_number(declared.operations, lattice)
    except NotAGroup:
        return True
    except (RuntimeError, ValueError):  # gemmi cannot read an operation: no verdict
        return False
    return found is not None and any(number != found for number in named)


def named_numbers(declared: DeclaredSymmetry) -> set[int]:
    """The space-group numbers the block's H-M symbol, Hall symbol and number stand for."""
    numbers = {hm_number(declared.hm), hall_number(declared.hall), declared.number or None}
    return {n for n in numbers if n is not None and 1 <= n <= 230}


def hm_number(symbol: str) -> int | None:
    """The number of an H-M symbol, also as old files write it (P2(1)/c, P2_1/c)."""
    symbol = symbol.strip()
    if symbol in ("", "?", "."):
        return None
    for name in (symbol, re.sub(r"[_()]", "", symbol)):
        found = gemmi.find_spacegroup_by_name(name)
        if found is not None:
            return int(found.number)
    return None


def hall_number(symbol: str) -> int | None:
    """The space-group number of a Hall symbol, None if gemmi cannot read it."""
    symbol = symbol.strip()
    if symbol in ("", "?", "."):
        return None
    try:
        found = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(symbol))
    except RuntimeError:
        return None
    return None if found is None else int(found.number)


def operations_number(operations: Sequence[str], lattice: np.ndarray) -> int | None:
    """The space-group type of the listed operations (identity added); NotAGroup if none.

    gemmi's table first: a tabulated group with exactly these operations (the usual case,
    one lookup); else the operations must be closed, and spglib names the group's type.
    """
    ops = sorted({gemmi.Op(_IDENTITY)} | {gemmi.Op(text).wrap() for text in operations}, key=str)
    tabulated = gemmi.find_spacegroup_by_ops(gemmi.GroupOps(ops))
    if tabulated is not None and len(list(tabulated.operations())) == len(ops):
        return int(tabulated.number)
    if not is_closed(ops):
        raise NotAGroup
    return spglib_number(ops, lattice)


def is_closed(ops: Sequence[gemmi.Op]) -> bool:
    """Is every product of two operations (translations modulo 1) one of them?

    A finite set with the identity that is closed under composition is a group.  All n^2
    products at once, in gemmi's integer units (1/24): 192 operations take a few ms.
    Raises ValueError for rotation entries that are not integers within +-4 (no
    crystallographic operation has them).
    """
    den = gemmi.Op.DEN
    rot = np.array([op.rot for op in ops], dtype=np.int64)  # (n, 3, 3), den * R
    tran = np.array([op.tran for op in ops], dtype=np.int64) % den  # (n, 3), den * t
    if np.abs(rot).max() > _MAX_ENTRY * den or np.any(rot % den):
        raise ValueError("rotation entries that are not integers within +-4")
    products_rot = (rot[:, None] @ rot[None, :]) // den  # (n, n, 3, 3): all pairs
    products_tran = ((rot[:, None] @ tran[None, :, :, None])[..., 0] // den + tran[:, None]) % den
    if np.abs(products_rot).max() > _MAX_ENTRY * den:
        return False  # a product no operation equals
    n = len(ops)
    products = _op_keys(products_rot.reshape(n * n, 3, 3), products_tran.reshape(n * n, 3), den)
    return bool(np.isin(products, _op_keys(rot, tran, den)).all())


def _op_keys(rot: np.ndarray, tran: np.ndarray, den: int) -> np.ndarray:
    """One integer per operation: rotation entries (within +-4) and translation as digits."""
    base = 2 * _MAX_ENTRY + 1
    rotation = (rot.reshape(len(rot), 9) // den + _MAX_ENTRY) @ (base ** np.arange(9))
    translation = tran @ (den ** np.arange(3))
    return rotation * den**3 + translation  # below 9^9 * 24^3 = 5.4e12


def spglib_number(ops: Sequence[gemmi.Op], lattice: np.ndarray) -> int | None:
    """The space-group type of a group of operations in a setting gemmi does not tabulate."""
    rotations = np.array([op.rot for op in ops], dtype=np.intc) // gemmi.Op.DEN
    translations = np.array([op.tran for op in ops], dtype=np.float64) / gemmi.Op.DEN
    try:
        found = spglib.get_spacegroup_type_from_symmetry(
            rotations, translations, np.asarray(lattice, dtype=np.float64)
        )
    except spglib.SpglibError:
        return None
    return None if found is None else int(found.number)
