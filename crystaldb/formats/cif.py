"""CIF files: gemmi as the fast path, pymatgen's CifParser where gemmi cannot read a block.

One entry per data block, numbered in file order.  gemmi reads the block into a
SmallStructure and expands the asymmetric unit to the full cell with
``get_all_unit_cell_sites()``.  That expansion merges symmetry images *of the same site*
that fall within 0.4 angstrom of each other (gemmi's special-position tolerance) and never
merges two different sites, so overlapping disordered sites survive and are caught later by
the minimum-distance check in ``validate``.

pymatgen takes over a block when gemmi cannot parse the file at all, when a site has no
recognisable element (e.g. a ``Wat1`` label without ``_atom_site_type_symbol``, which
pymatgen reads as O), or when the block declares symmetry that gemmi could not turn into
operations.  Sites that the CIF itself marks as dummy atoms (``_atom_site_calc_flag dum``:
ring centroids such as ``Cg1`` in COD 2013971, or the H placeholders with ``.``
coordinates in COD 1001614) are not atoms and are dropped; the entry carries the flag
``dummy_sites_dropped``.

Whichever reader builds the cell, the block's own statements travel with it: its
``_chemical_formula_sum`` (compared with the cell's composition by the validator:
``formula_sum_mismatch``), and its space-group name against its listed operations
(declared.py: ``symops_contradict_symbol``).  Deuterium sites (``D``) keep their isotope
as mass number 2 (isotopes.py).

Writing (`to_cif`, the API's CIF download) goes through pymatgen's CifWriter, partial
occupancies kept; it cannot state isotopes: pymatgen spells deuterium and tritium as H.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import gemmi
import numpy as np
from ase.data import chemical_symbols
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifFile, CifParser, CifWriter

from crystaldb.core.declared import DeclaredSymmetry, symops_contradict_symbol
from crystaldb.core.isotopes import mass_number_of_symbol, mass_numbers_or_none
from crystaldb.core.records import (
    DUMMY_SITES_DROPPED,
    PYMATGEN_FALLBACK,
    SYMOPS_CONTRADICT_SYMBOL,
    IngestError,
    ParsedStructure,
    Reason,
    Rejection,
    where,
)
from crystaldb.formats.convert import occupancies_or_none, parsed_from_pymatgen, wrap_fractional
from crystaldb.formats.identifiers import cod_id_from_tag, ids_from_path

Engine = Literal["auto", "gemmi", "pymatgen"]
CifResult = list[ParsedStructure | Rejection]

_P1_NAMES = {"", "?", ".", "P1"}  # compared with spaces removed
_MAX_WARNINGS_IN_MESSAGE = 3
_UNKNOWN_VALUES = {"", "?", "."}
# Each statement's tags, the DDLm name first, then the DDL1 name that older files use.
_OPERATIONS = ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz")
_HM = ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M")
_HALL = ("_space_group_name_Hall", "_symmetry_space_group_name_Hall")
_NUMBER = ("_space_group_IT_number", "_symmetry_Int_Tables_number")
_FORMULA_SUM = ("_chemical_formula_sum",)


@dataclass(frozen=True, slots=True)
class Statements:
    """What a data block says about itself, to check against the cell built from it."""

    symmetry: DeclaredSymmetry
    formula_sum: str | None


def parse_cif_text(
    text: str,
    path: str,
    *,
    sha256: str | None = None,
    database: str | None = None,
    engine: Engine = "auto",
) -> CifResult:
    """Parse every data block of a CIF; never raises for bad input, returns Rejections."""
    if not text.strip():
        return [_reject(Reason.NO_ATOMS, path, None, sha256, "file is empty (no data blocks)")]
    ids = ids_from_path(path, database)
    if engine == "pymatgen":
        return _parse_with_pymatgen(text, path, sha256, ids, gemmi_problem=None)
    try:
        document = gemmi.cif.read_string(text)
    except Exception as error:  # gemmi raises RuntimeError/ValueError with a line number
        problem = _gemmi_message(error, path)
        if engine == "gemmi":
            return [_reject(Reason.PARSE_ERROR, path, None, sha256, "", raw=problem)]
        return _parse_with_pymatgen(text, path, sha256, ids, gemmi_problem=problem)
    if len(document) == 0:
        return [_reject(Reason.NO_ATOMS, path, None, sha256, "no data blocks in the file")]
    return [
        _parse_block(block, index, path, sha256, ids, engine)
        for index, block in enumerate(document)
    ]


def _parse_block(
    block: Any, entry: int, path: str, sha256: str | None, ids: dict[str, str], engine: Engine
) -> ParsedStructure | Rejection:
    """One data block through gemmi, handing it to pymatgen where gemmi falls short."""
    block_ids = _block_ids(block, ids)
    statements = gemmi_statements(block)
    try:
        return with_statements(_gemmi_block(block, entry, path, sha256, block_ids), statements)
    except _NeedsFallback as need:
        if engine == "gemmi":
            return _reject(need.reason, path, entry, sha256, "", raw=need.message)
        return _pymatgen_block(
            block.as_string(),
            block.name,
            entry,
            path,
            sha256,
            block_ids,
            need.reason,
            need.message,
            statements,
        )
    except IngestError as error:
        return Rejection.from_error(error, path, entry, sha256)
    except Exception as error:  # a block no reader foresaw must not sink the whole file
        message = f"{type(error).__name__}: {error}"
        return _reject(Reason.PARSE_ERROR, path, entry, sha256, message, block.name)


class _NeedsFallback(Exception):
    """gemmi could read the block but not trust the result; pymatgen should try."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _gemmi_block(
    block: Any, entry: int, path: str, sha256: str | None, ids: dict[str, str]
) -> ParsedStructure:
    """Read one block with gemmi and expand it to the full unit cell."""
    here = where(path, entry, block.name)
    try:
        small = gemmi.make_small_structure_from_block(block)
    except Exception as error:
        raise _NeedsFallback(Reason.PARSE_ERROR, f"{here}: gemmi: {error}") from error
    if len(small.sites) == 0:
        raise IngestError(Reason.NO_ATOMS, f"{here}: data block has no atom sites")
    if not small.cell.is_crystal():
        raise IngestError(
            Reason.DEGENERATE_LATTICE,
            f"{here}: no unit cell (_cell_length_a/b/c or _cell_angle_* missing or unknown)",
        )
    if len(small.cell.images) == 0 and _declares_symmetry(small):
        raise _NeedsFallback(
            Reason.PARSE_ERROR,
            f"{here}: gemmi could not interpret the declared symmetry"
            f" (H-M {small.spacegroup_hm!r}, Hall {small.spacegroup_hall!r},"
            f" {len(small.symops)} operations)",
        )
    dummies = _dummy_labels(block)
    unknown = [
        s.label for s in small.sites if s.element.atomic_number == 0 and s.label not in dummies
    ]
    if unknown:
        raise _NeedsFallback(
            Reason.UNKNOWN_ELEMENT,
            f"{here}: no chemical element for site(s) {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),
        )
    sites: Any = small.get_all_unit_cell_sites()
    dropped = bool(dummies) and any(s.label in dummies for s in small.sites)
    if dropped:
        sites = [s for s in sites if s.label not in dummies]
    rows = [
        (s.fract.x, s.fract.y, s.fract.z, s.occ, s.element.atomic_number, _mass_number(s))
        for s in sites
    ]
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return ParsedStructure(
        lattice=np.array(small.cell.orth.mat.tolist(), dtype=np.float64).T,
        frac_coords=wrap_fractional(table[:, :3]),
        numbers=table[:, 4].astype(np.int64),
        occupancies=occupancies_or_none(table[:, 3]),
        mass_numbers=mass_numbers_or_none(table[:, 5].astype(np.int64)),
        path=path,
        entry=entry,
        block_name=block.name,
        external_ids=ids,
        sha256=sha256,
        flags=(DUMMY_SITES_DROPPED,) if dropped else (),
    )


def _mass_number(site: Any) -> int:
    """A gemmi site's isotope: gemmi reads D as an element of its own (Z = 1)."""
    return mass_number_of_symbol(site.element.name)


def gemmi_statements(block: Any) -> Statements:
    """A gemmi block's symmetry statements and formula sum."""
    return _statements(lambda tag: [gemmi.cif.as_string(v) for v in block.find_values(tag)])


def pymatgen_statements(data: dict[str, Any]) -> Statements:
    """The same from a pymatgen CifBlock's data (values already unquoted)."""

    def values(tag: str) -> list[str]:
        value = data.get(tag)
        return [] if value is None else [value] if isinstance(value, str) else list(value)

    return _statements(values)


def _statements(values: Callable[[str], list[str]]) -> Statements:
    """Statements from a tag -> values reader, the first tag of each choice that has any."""

    def first(tags: tuple[str, ...]) -> list[str]:
        for tag in tags:
            found = [v.strip() for v in values(tag) if v.strip() not in _UNKNOWN_VALUES]
            if found:
                return found
        return []

    number = (first(_NUMBER) or [""])[0]
    formula = first(_FORMULA_SUM)
    symmetry = DeclaredSymmetry(
        operations=tuple(first(_OPERATIONS)),
        hm=(first(_HM) or [""])[0],
        hall=(first(_HALL) or [""])[0],
        number=int(number) if number.isdigit() else None,
    )
    return Statements(symmetry=symmetry, formula_sum=formula[0] if formula else None)


def with_statements(parsed: ParsedStructure, statements: Statements) -> ParsedStructure:
    """The parsed cell with the block's formula sum and, where it applies, the symmetry flag."""
    flags = parsed.flags
    if symops_contradict_symbol(statements.symmetry, parsed.lattice):
        flags = (*flags, SYMOPS_CONTRADICT_SYMBOL)
    return replace(parsed, flags=flags, declared_formula=statements.formula_sum)


def _declares_symmetry(small: Any) -> bool:
    """True when the block names symmetry beyond P1 (so an empty expansion is suspicious)."""
    if len(small.symops) > 1 or small.spacegroup_number > 1:
        return True
    names = (small.spacegroup_hm.strip(), small.spacegroup_hall.strip())
    return any(name.replace(" ", "") not in _P1_NAMES for name in names)


def _dummy_labels(block: Any) -> set[str]:
    """Labels the CIF marks as dummy atoms (centroids and the like), which carry no element."""
    table = block.find("_atom_site_", ["label", "calc_flag"])
    return {row.str(0) for row in table if row.str(1).lower() == "dum"}


def _block_ids(block: Any, ids: dict[str, str]) -> dict[str, str]:
    """File-name ids, with the COD id from `_cod_database_code` taking precedence."""
    cod = cod_id_from_tag(block.find_value("_cod_database_code"))
    return {**ids, "cod": cod} if cod else dict(ids)


def _parse_with_pymatgen(
    text: str, path: str, sha256: str | None, ids: dict[str, str], gemmi_problem: str | None
) -> CifResult:
    """Whole-file fallback: split into blocks with pymatgen's own reader, then parse each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            blocks = CifFile.from_str(text).data
            error: Exception | None = None
        except Exception as exc:
            blocks, error = {}, exc
    if error is not None:
        prefix = f"{gemmi_problem}; pymatgen: " if gemmi_problem else f"{path}: pymatgen: "
        raw = prefix + str(error) + _notes(caught)
        return [_reject(Reason.PARSE_ERROR, path, None, sha256, "", raw=raw)]
    if not blocks:
        if gemmi_problem:  # gemmi's syntax error is the real story
            raw = f"{gemmi_problem}; pymatgen: no data blocks"
            return [_reject(Reason.PARSE_ERROR, path, None, sha256, "", raw=raw)]
        return [_reject(Reason.NO_ATOMS, path, None, sha256, "no data blocks in the file")]
    results: CifResult = []
    for entry, (name, block) in enumerate(blocks.items()):
        block_ids = dict(ids)
        cod = cod_id_from_tag(block.data.get("_cod_database_code"))
        if cod:
            block_ids["cod"] = cod
        problem = gemmi_problem or f"{where(path, entry, name)}: pymatgen engine requested"
        results.append(
            _pymatgen_block(
                str(block),
                name,
                entry,
                path,
                sha256,
                block_ids,
                Reason.PARSE_ERROR,
                problem,
                pymatgen_statements(block.data),
            )
        )
    return results


def _pymatgen_block(
    block_text: str,
    name: str,
    entry: int,
    path: str,
    sha256: str | None,
    ids: dict[str, str],
    reason: Reason,
    gemmi_problem: str,
    statements: Statements,
) -> ParsedStructure | Rejection:
    """Parse one block with CifParser; on failure report both parsers' messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structures = CifParser.from_str(block_text).parse_structures(primitive=False)
            error: Exception | None = None
        except Exception as exc:
            structures, error = [], exc
    if error is not None or not structures:
        detail = f"; pymatgen: {error or 'no structure'}" + _notes(caught)
        return _reject(reason, path, entry, sha256, "", name, raw=gemmi_problem + detail)
    try:
        parsed = parsed_from_pymatgen(
            structures[0],
            path,
            entry,
            block_name=name,
            external_ids=ids,
            sha256=sha256,
            flags=(PYMATGEN_FALLBACK,),
        )
        return with_statements(parsed, statements)
    except IngestError as exc:
        return Rejection.from_error(exc, path, entry, sha256)


def _notes(caught: list[warnings.WarningMessage]) -> str:
    """pymatgen explains failures in warnings; keep the first few for the message."""
    notes = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
    return f" ({'; '.join(notes[:_MAX_WARNINGS_IN_MESSAGE])})" if notes else ""


def _gemmi_message(error: Exception, path: str) -> str:
    """gemmi names in-memory input 'string'; put the file name back into its message."""
    message = str(error)
    if message.startswith("string:"):
        message = message[len("string:") :]
        return f"{path}:{message}"
    return f"{path}: {message}"


def _reject(
    reason: Reason,
    path: str,
    entry: int | None,
    sha256: str | None,
    message: str,
    block_name: str | None = None,
    *,
    raw: str | None = None,
) -> Rejection:
    """A Rejection whose message starts with the file (and entry) it is about."""
    text = raw if raw is not None else f"{where(path, entry, block_name)}: {message}"
    return Rejection(path=path, entry=entry, reason=str(reason), message=text, sha256=sha256)


def to_cif(cell: Any) -> str:
    """A CIF of a stored cell (lattice, frac_coords, atomic_numbers, occupancies), for download."""
    symbols = [chemical_symbols[z] for z in cell.atomic_numbers]
    occupancies = cell.occupancies or [1.0] * len(cell.atomic_numbers)
    sites = [{symbol: occ} for symbol, occ in zip(symbols, occupancies, strict=True)]
    structure = Structure(Lattice(cell.lattice), sites, cell.frac_coords)
    return str(CifWriter(structure))
