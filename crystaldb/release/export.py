"""Exporters: a frozen ReleaseData to a folder of files, byte-identical on every run.

``export_release(data, fmt, out)`` writes the format's files, the figures (plots.py) and
``manifest.json`` (manifest.py) into a hidden sibling of `out`, then renames it to `out`: the
rename is atomic (same parent, same filesystem), so a failed export leaves neither `out` nor
the temporary folder behind. Nothing written depends on the time, the host or dict/set
iteration order; cartesian positions are computed with elementwise IEEE operations (no BLAS)
so they do not depend on the CPU either. Formats:

- ``omdb-gap1``: the OMDB-GAP1 v1.1 layout (structures.xyz, bandgaps.csv, CODids.csv,
  README.md), readable by ``crystaldb.formats.omdb_gap1.read_omdb_gap1``.
- ``extxyz``: structures.extxyz, every member with structure_id, split, label and COD id.

Isotopes: a member with an isotope site (a deuterated crystal) gets a ``masses`` column in
extended XYZ (``extxyz``, and ``omdb-gap1``'s structures.xyz), the isotope's mass on its
sites and ASE's natural masses on the others, which crystaldb's readers read back as the
isotope; members without one are written exactly as before.  matbench (pymatgen writes
deuterium as H), optimade-jsonl and parquet write the natural elements only.
- ``matbench``: <name>.json.gz as matminer/matbench store datasets (a pandas "split"
  frame of pymatgen Structure dicts and the target), metadata.json and folds.json.
- ``optimade-jsonl``: optimade.jsonl, one OPTIMADE structures resource per line after the
  ``x-optimade`` header line and the structures info line.
- ``parquet``: members.parquet, one row per member.

A label is a finite number or absent: NaN or infinite labels are refused by every format,
and omdb-gap1 and matbench need a label on every member.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from pymatgen.core import Lattice, Structure

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.isotopes import site_masses
from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.release import manifest, plots

FORMATS = ("omdb-gap1", "extxyz", "matbench", "optimade-jsonl", "parquet")

# COD ids as crystaldb's OMDB importer accepts them (crystaldb.formats.identifiers).
_COD_ID = re.compile(r"[1-9]\d{6}")
OPTIMADE_API_VERSION = "1.2.0"
PROVIDER = "_crystaldb_"
XYZ_SNAP = 1e-8  # fractional; see xyz_frac
XYZ_ZERO = 5e-9  # angstrom; prints as 0.00000000 with ase's %16.8f


class ExportError(CrystaldbError):
    """An export refused: the message names the argument, release or member at fault."""


# --- the public entry point -------------------------------------------------------------------


def export_release(data: ReleaseData, fmt: str, out: Path) -> list[Path]:
    """Write `data` in format `fmt` as the new folder `out`, all or nothing; return its files."""
    out = Path(out)
    _check_request(data, fmt, out)
    target = Path(os.path.abspath(out))
    try:
        staging = _staging_folder(target)
    except OSError as error:
        raise ExportError(f"--out {out}: {error}") from error
    try:
        WRITERS[fmt](data, staging)
        plots.write_plots(data, staging)
        manifest.write_manifest(data, fmt, staging)
        _publish(staging, target, out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"--out {out}: {error}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p for p in out.iterdir() if p.is_file())


def _check_request(data: ReleaseData, fmt: str, out: Path) -> None:
    """Refuse an unknown format, an empty release or an `out` that holds anything."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if not data.members:
        raise ExportError(f"release {data.name} {data.version} has no members")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"--out {out}: folder is not empty")


def _staging_folder(target: Path) -> Path:
    """A new hidden sibling of `target`, so the final rename stays on one filesystem."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()  # the usual mode (umask applies), unlike tempfile.mkdtemp's 0700
    return staging


def _publish(staging: Path, target: Path, out: Path) -> None:
    """Rename the finished folder into place; an empty `out` is replaced, a filled one refused."""
    try:
        os.rename(staging, target)
    except OSError as error:
        if target.is_dir() and any(target.iterdir()):
            raise ExportError(f"--out {out}: folder is not empty") from error
        raise


# --- what every format shares -----------------------------------------------------------------


def _who(data: ReleaseData, member: Member) -> str:
    """Name a member the same way in every message."""
    return (
        f"release {data.name} {data.version}, member {member.position}"
        f" (structure {member.structure_id})"
    )


def _label(data: ReleaseData, member: Member, fmt: str, *, required: bool) -> float | None:
    """The member's label as a float; refuse NaN/infinite, and a missing one where required."""
    name = data.label_property or "label"
    if member.label is None:
        if required:
            raise ExportError(f"{_who(data, member)}: has no {name}; {fmt} needs one per member")
        return None
    value = float(member.label)
    if not math.isfinite(value):
        raise ExportError(f"{_who(data, member)}: {name} is {value}; {fmt} needs a finite number")
    return value


def _cod_id(member: Member) -> str | None:
    """The member's COD id, if it has one."""
    cod = member.external_ids.get("cod")
    return str(cod).strip() if cod is not None else None


def _lattice(member: Member) -> np.ndarray:
    """(3, 3) float64, rows are the lattice vectors in angstrom."""
    return np.asarray(member.lattice, dtype=np.float64).reshape(3, 3)


def _frac(member: Member) -> np.ndarray:
    """(n, 3) float64 fractional coordinates."""
    return np.asarray(member.frac_coords, dtype=np.float64).reshape(-1, 3)


def _numbers(member: Member) -> np.ndarray:
    """(n,) atomic numbers."""
    return np.asarray(member.atomic_numbers, dtype=np.int64).reshape(-1)


def cartesian(member: Member, frac: np.ndarray | None = None) -> np.ndarray:
    """frac @ lattice, summed term by term so no BLAS kernel can change the last bit."""
    frac = _frac(member) if frac is None else frac
    lattice = _lattice(member)
    return frac[:, 0:1] * lattice[0] + frac[:, 1:2] * lattice[1] + frac[:, 2:3] * lattice[2]


def xyz_frac(member: Member) -> np.ndarray:
    """Fractional coordinates within XYZ_SNAP below 1 set to 0: the same site, stable in XYZ.

    XYZ positions have 8 decimals, so an atom on a cell face (fractional 0 in a triclinic cell)
    comes back from an import as -1e-10, which the importer wraps to 0.9999999999; exported as
    is, it would be written one lattice vector away. Snapping moves such a site by at most
    XYZ_SNAP * |a| (1e-7 Å in a 10 Å cell), so export -> import -> export gives the same bytes.
    """
    frac = _frac(member)
    return np.where((frac > 1.0 - XYZ_SNAP) & (frac <= 1.0), 0.0, frac)


def atoms_of(member: Member) -> Atoms:
    """The member as a periodic ase.Atoms (cell rows = lattice vectors, cartesian positions)."""
    positions = cartesian(member, xyz_frac(member))
    # below the 8 written decimals: +0.0, so round-off never prints as -0.00000000
    positions[np.abs(positions) < XYZ_ZERO] = 0.0
    atoms = Atoms(numbers=_numbers(member), positions=positions, cell=_lattice(member), pbc=True)
    if member.mass_numbers is not None:  # isotopes: explicit masses, natural ones as ase's
        isotopic = np.asarray(member.mass_numbers) != 0
        masses = atoms.get_masses()
        masses[isotopic] = site_masses(_numbers(member), member.mass_numbers)[isotopic]
        atoms.set_masses(masses)
    return atoms


def _write_extxyz(handle: io.TextIOWrapper, frames: list[Atoms]) -> None:
    """ase.io.write's extended XYZ; no calculators and no constraints to look for, so say so.

    Same bytes as the defaults for Atoms built by atoms_of, without ase copying every frame to
    save calculator results and building a move mask per frame (about 10% of the time).
    Frames with explicit masses (isotopes) add a masses column.
    """
    for with_masses, run in groupby(frames, key=lambda atoms: atoms.has("masses")):
        columns = ["symbols", "positions", "masses"] if with_masses else ["symbols", "positions"]
        ase.io.write(handle, list(run), format="extxyz", write_results=False, columns=columns)


def _text_file(path: Path) -> io.TextIOWrapper:
    """UTF-8 with \\n line ends on every platform."""
    return path.open("w", encoding="utf-8", newline="\n")


def _safe_name(name: str) -> str:
    """A release name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "release"


# --- omdb-gap1 -------------------------------------------------------------------------------

OMDB_STRUCTURES = "structures.xyz"
OMDB_BANDGAPS = "bandgaps.csv"
OMDB_COD_IDS = "CODids.csv"
OMDB_README = "README.md"


def write_omdb_gap1(data: ReleaseData, folder: Path) -> None:
    """structures.xyz, bandgaps.csv (%.18e), CODids.csv and README.md, line i = member i."""
    with _text_file(folder / OMDB_STRUCTURES) as handle:
        _write_extxyz(handle, [atoms_of(m) for m in data.members])
    with _text_file(folder / OMDB_BANDGAPS) as handle:
        handle.writelines(f"{_omdb_gap(data, m):.18e}\n" for m in data.members)
    with _text_file(folder / OMDB_COD_IDS) as handle:
        handle.writelines(f"{_omdb_cod(data, m)}\n" for m in data.members)
    (folder / OMDB_README).write_text(omdb_readme(data), encoding="utf-8")


def _omdb_gap(data: ReleaseData, member: Member) -> float:
    """A finite, non-negative gap: what read_omdb_gap1 accepts."""
    value = _label(data, member, "omdb-gap1", required=True)
    assert value is not None
    if value < 0:
        raise ExportError(
            f"{_who(data, member)}: band gap {value} is negative; omdb-gap1 needs gaps >= 0"
        )
    return value


def _omdb_cod(data: ReleaseData, member: Member) -> int:
    """A seven-digit COD id: what read_omdb_gap1 accepts."""
    cod = _cod_id(member)
    if cod is None:
        raise ExportError(f"{_who(data, member)}: has no COD id; omdb-gap1 needs one per member")
    if not _COD_ID.fullmatch(cod):
        raise ExportError(f"{_who(data, member)}: COD id {cod!r} is not seven digits")
    return int(cod)


def split_runs(data: ReleaseData) -> list[tuple[str, int]]:
    """Consecutive (split, count) runs in release order: [('train', 10000), ('test', 2500)]."""
    runs: list[tuple[str, int]] = []
    for member in data.members:
        if runs and runs[-1][0] == member.split:
            runs[-1] = (member.split, runs[-1][1] + 1)
        else:
            runs.append((member.split, 1))
    return runs


def split_rule(data: ReleaseData) -> str:
    """The split in words: 'first 10000 train, last 2500 test', or the counts if interleaved."""
    runs = split_runs(data)
    if len(runs) == 1:
        return f"all {runs[0][1]} {runs[0][0]}"
    if len({name for name, _ in runs}) == len(runs):
        words = [f"{'first' if i == 0 else 'next'} {n} {name}" for i, (name, n) in enumerate(runs)]
        words[-1] = f"last {runs[-1][1]} {runs[-1][0]}"
        return ", ".join(words)
    counts = manifest.split_structure_ids(data)
    listed = ", ".join(f"{len(ids)} {name}" for name, ids in counts.items())
    return f"{listed}, interleaved (manifest.json lists the structure ids of each split)"


def _readme_loading(data: ReleaseData) -> str:
    """The loading example, with slices when the splits are contiguous blocks."""
    lines = [
        "```python",
        "import ase.io",
        "import numpy as np",
        "",
        f"structures = ase.io.read('{OMDB_STRUCTURES}', index=':')",
        f"band_gaps = np.loadtxt('{OMDB_BANDGAPS}')",
        f"cod_ids = np.loadtxt('{OMDB_COD_IDS}', dtype=int)",
    ]
    runs = split_runs(data)
    if len({name for name, _ in runs}) == len(runs) > 1:
        start = 0
        for name, count in runs:
            ident = re.sub(r"\W", "_", name)
            lines.append(
                f"{ident}_x, {ident}_y = structures[{start}:{start + count}],"
                f" band_gaps[{start}:{start + count}]"
            )
            start += count
    lines.append("```")
    return "\n".join(lines)


def _readme_method(data: ReleaseData) -> list[str]:
    """The label method as a bullet list, parameters as JSON."""
    method = data.label_method or {}
    lines = []
    for key in ("functional", "code", "code_version", "reference"):
        if method.get(key) is not None:
            lines.append(f"- {key.replace('_', ' ')}: {method[key]}")
    if method.get("parameters") is not None:
        parameters = json.dumps(method["parameters"], sort_keys=True)
        lines.append(f"- parameters: `{parameters}`")
    others = {
        k: v
        for k, v in method.items()
        if k not in {"functional", "code", "code_version", "reference", "parameters"}
    }
    for key in sorted(others):
        lines.append(f"- {key.replace('_', ' ')}: `{json.dumps(others[key], sort_keys=True)}`")
    return lines or ["- not recorded"]


def _readme_statistics(data: ReleaseData) -> list[str]:
    """The label statistics as a table."""
    stats = manifest.label_statistics(manifest.labels_of(data))
    unit = data.label_unit or ""
    if stats is None:
        return ["No labels."]
    return [
        f"| statistic | value ({unit}) |" if unit else "| statistic | value |",
        "|---|---:|",
        f"| mean | {stats.mean:.4f} |",
        f"| median | {stats.median:.4f} |",
        f"| standard deviation | {stats.std:.4f} |",
        f"| minimum | {stats.minimum:.4f} |",
        f"| maximum | {stats.maximum:.4f} |",
        f"| exact zeros | {stats.zeros} |",
    ]


def omdb_readme(data: ReleaseData) -> str:
    """README.md of an OMDB-GAP1 folder: files, contents, label statistics, split, method."""
    n = len(data.members)
    name = data.label_property or "label"
    unit = data.label_unit or ""
    in_unit = f" in {unit}" if unit else ""
    spec = f" (split spec `{data.split_spec}`)" if data.split_spec else ""
    elements = plots.element_counts(data)
    symbols = sorted((s for s, _ in elements), key=lambda s: (atomic_numbers.get(s, 999), s))
    spacegroups = plots.spacegroup_counts(data)
    sites = [len(_numbers(m)) for m in data.members]
    common = ", ".join(f"{sg}: {count}" for sg, count in spacegroups[:5])
    lines = [
        f"# {data.name} {data.version}",
        "",
        f"{n} crystal structures with their {name}{in_unit}, in the OMDB-GAP1 v1.1 layout: "
        "entry i of each of the three files describes the same structure.",
        "Exported by crystaldb from a frozen release; `manifest.json` has the sha256 of every"
        " file.",
        "",
        "| file | content |",
        "|---|---|",
        f"| `{OMDB_STRUCTURES}` | {n} structures in extended XYZ (`Lattice`, cartesian positions"
        ' in Å, `pbc="T T T"`), in release order |',
        f"| `{OMDB_BANDGAPS}` | {n} {name} values{in_unit}, one per line, no header,"
        " written as `%.18e` |",
        f"| `{OMDB_COD_IDS}` | {n} COD ids (Crystallography Open Database), one integer per line,"
        " no header |",
        "",
        "## Contents",
        "",
        f"- structures: {n}, {min(sites)} to {max(sites)} atoms per cell"
        f" (mean {sum(sites) / n:.1f})",
        f"- elements: {len(symbols)} distinct: {', '.join(symbols)}",
        f"- space groups: {len(spacegroups)} distinct"
        + (f"; most common {common}" if common else ""),
        "",
        f"## Labels: {name}" + (f" ({unit})" if unit else ""),
        "",
        *_readme_statistics(data),
        "",
        "## Split",
        "",
        f"{split_rule(data)}{spec}.",
        "",
        "## Method",
        "",
        *_readme_method(data),
        "",
        "## Loading",
        "",
        _readme_loading(data),
        "",
    ]
    return "\n".join(lines)


# --- extxyz ----------------------------------------------------------------------------------

EXTXYZ = "structures.extxyz"


def write_extxyz(data: ReleaseData, folder: Path) -> None:
    """One extended XYZ file; each frame's info has structure_id, split, the label, cod_id."""
    with _text_file(folder / EXTXYZ) as handle:
        _write_extxyz(handle, [_tagged_atoms(data, m) for m in data.members])


def _tagged_atoms(data: ReleaseData, member: Member) -> Atoms:
    """atoms_of(member) with the release's per-member facts in atoms.info."""
    atoms = atoms_of(member)
    atoms.info["structure_id"] = int(member.structure_id)
    atoms.info["split"] = member.split
    label = _label(data, member, "extxyz", required=False)
    if label is not None:
        atoms.info[data.label_property or "label"] = label
    cod = _cod_id(member)
    if cod is not None:
        atoms.info["cod_id"] = cod
    return atoms


# --- matbench --------------------------------------------------------------------------------

MATBENCH_METADATA = "metadata.json"
MATBENCH_FOLDS = "folds.json"


def write_matbench(data: ReleaseData, folder: Path) -> None:
    """<name>.json.gz (pandas 'split' frame, as matminer stores datasets), metadata, folds."""
    target = data.label_property or "label"
    values = [_label(data, m, "matbench", required=True) for m in data.members]
    name = f"{_safe_name(data.name)}.json"
    with (
        (folder / f"{name}.gz").open("wb") as raw,
        gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed,
        io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as handle,
    ):
        handle.write('{"index": ')
        json.dump([int(m.position) for m in data.members], handle)
        handle.write(", " + f'"columns": {json.dumps(["structure", target])}, "data": [')
        for i, (member, value) in enumerate(zip(data.members, values, strict=True)):
            row = [_structure(member).as_dict(), value]
            handle.write((", " if i else "") + json.dumps(row, allow_nan=False))
        handle.write("]}")
    (folder / MATBENCH_METADATA).write_text(
        manifest.dumps(_matbench_metadata(data, target, values)), encoding="utf-8"
    )
    (folder / MATBENCH_FOLDS).write_text(manifest.dumps(_folds(data)), encoding="utf-8")


def _structure(member: Member) -> Structure:
    """The member as a pymatgen Structure (fractional coordinates as stored)."""
    return Structure(Lattice(_lattice(member)), _numbers(member).tolist(), _frac(member))


def _matbench_metadata(
    data: ReleaseData, target: str, values: list[float | None]
) -> dict[str, Any]:
    """matbench-style metadata: n_samples, target, unit and the target's mean absolute deviation."""
    numbers = [v for v in values if v is not None]
    mean = math.fsum(numbers) / len(numbers)
    mad = math.fsum(abs(v - mean) for v in numbers) / len(numbers)
    return {
        "n_samples": len(numbers),
        "target": target,
        "unit": data.label_unit,
        "mad": mad,
        "task_type": "regression",
        "input_type": "structure",
        "columns": {
            "structure": "pymatgen Structure (Structure.as_dict()) of the crystal",
            target: f"target: {target} in {data.label_unit}",
        },
        "release": {"name": data.name, "version": data.version},
        "label_method": data.label_method,
    }


def _folds(data: ReleaseData) -> dict[str, Any]:
    """The split of each row (index = member position) and the rows of each split."""
    splits: dict[str, list[int]] = {}
    for member in data.members:
        splits.setdefault(member.split, []).append(int(member.position))
    return {
        "split_spec": data.split_spec,
        "index": [int(m.position) for m in data.members],
        "assignment": [m.split for m in data.members],
        "splits": splits,
    }


# --- optimade-jsonl --------------------------------------------------------------------------

OPTIMADE_JSONL = "optimade.jsonl"


def write_optimade_jsonl(data: ReleaseData, folder: Path) -> None:
    """The x-optimade header line, the structures info line, then one structure per line."""
    with _text_file(folder / OPTIMADE_JSONL) as handle:
        handle.write(_json_line({"x-optimade": {"meta": {"api_version": OPTIMADE_API_VERSION}}}))
        handle.write(_json_line(_optimade_info(data)))
        handle.writelines(_json_line(optimade_resource(data, m)) for m in data.members)


def _json_line(document: Any) -> str:
    """Compact, key-sorted, strict JSON on one line."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def _label_field(data: ReleaseData) -> str:
    """Provider field of the label: _crystaldb_band_gap."""
    return PROVIDER + re.sub(r"\W", "_", data.label_property or "label")


def _optimade_info(data: ReleaseData) -> dict[str, Any]:
    """The info/structures entry: definitions of the provider-specific fields."""
    properties: dict[str, dict[str, Any]] = {
        _label_field(data): {
            "description": f"{data.label_property} of release {data.name} {data.version}"
            f" ({json.dumps(data.label_method, sort_keys=True)})",
            "unit": data.label_unit,
            "type": "float",
        },
        PROVIDER + "split": {"description": "split of the release", "type": "string"},
        PROVIDER + "structure_id": {"description": "crystaldb structure id", "type": "integer"},
        PROVIDER + "position": {"description": "position in the release", "type": "integer"},
        PROVIDER + "cod_id": {"description": "Crystallography Open Database id", "type": "string"},
        PROVIDER + "spacegroup_symbol": {"description": "space group (spglib)", "type": "string"},
    }
    return {
        "type": "info",
        "id": "structures",
        "description": f"structures of release {data.name} {data.version}",
        "formats": ["json"],
        "properties": properties,
        "output_fields_by_format": {"json": sorted(properties)},
    }


def optimade_formula(symbols: list[str]) -> str:
    """chemical_formula_reduced: elements alphabetical, counts divided by their gcd, 1 omitted."""
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    divisor = math.gcd(*counts.values()) if counts else 1
    return "".join(
        f"{s}{counts[s] // divisor if counts[s] // divisor > 1 else ''}" for s in sorted(counts)
    )


def optimade_resource(data: ReleaseData, member: Member) -> dict[str, Any]:
    """One OPTIMADE structures resource with the release's facts as _crystaldb_ fields."""
    symbols = [chemical_symbols[z] for z in _numbers(member)]
    elements = sorted(set(symbols))
    attributes: dict[str, Any] = {
        "lattice_vectors": _lattice(member).tolist(),
        "cartesian_site_positions": cartesian(member).tolist(),
        "species_at_sites": symbols,
        "species": [{"name": s, "chemical_symbols": [s], "concentration": [1.0]} for s in elements],
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": [symbols.count(s) / len(symbols) for s in elements],
        "nsites": len(symbols),
        "chemical_formula_reduced": optimade_formula(symbols),
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "structure_features": [],
        "space_group_it_number": member.spacegroup_number,
        _label_field(data): _label(data, member, "optimade-jsonl", required=False),
        PROVIDER + "split": member.split,
        PROVIDER + "structure_id": int(member.structure_id),
        PROVIDER + "position": int(member.position),
        PROVIDER + "cod_id": _cod_id(member),
        PROVIDER + "spacegroup_symbol": member.spacegroup_symbol,
    }
    return {"id": str(member.structure_id), "type": "structures", "attributes": attributes}


# --- parquet ---------------------------------------------------------------------------------

PARQUET = "members.parquet"
PARQUET_SCHEMA = pa.schema(
    [
        ("position", pa.int32()),
        ("structure_id", pa.int64()),
        ("split", pa.string()),
        ("reduced_formula", pa.string()),
        ("elements", pa.list_(pa.string())),
        ("spacegroup_number", pa.int16()),
        ("label", pa.float64()),
        ("cod_id", pa.string()),
        ("lattice", pa.list_(pa.float64())),
        ("frac_coords", pa.list_(pa.float64())),
        ("atomic_numbers", pa.list_(pa.int16())),
    ]
)


def write_parquet(data: ReleaseData, folder: Path) -> None:
    """members.parquet: one row per member; lattice row-major (9), frac_coords flat (3n)."""
    members = data.members
    columns = {
        "position": [int(m.position) for m in members],
        "structure_id": [int(m.structure_id) for m in members],
        "split": [m.split for m in members],
        "reduced_formula": [m.reduced_formula for m in members],
        "elements": [list(m.elements) for m in members],
        "spacegroup_number": [m.spacegroup_number for m in members],
        "label": [_label(data, m, "parquet", required=False) for m in members],
        "cod_id": [_cod_id(m) for m in members],
        "lattice": _flat_lists([_lattice(m) for m in members], pa.float64()),
        "frac_coords": _flat_lists([_frac(m) for m in members], pa.float64()),
        "atomic_numbers": _flat_lists([_numbers(m) for m in members], pa.int16()),
    }
    metadata = {"crystaldb.release": f"{data.name} {data.version}"}
    table = pa.table(columns, schema=PARQUET_SCHEMA.with_metadata(metadata))
    pq.write_table(table, folder / PARQUET, compression="zstd")


def _flat_lists(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    """A list column from numpy arrays without a Python loop over their values."""
    lengths = np.array([a.size for a in arrays], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


# --- the table of writers --------------------------------------------------------------------

WRITERS: dict[str, Callable[[ReleaseData, Path], None]] = {
    "omdb-gap1": write_omdb_gap1,
    "extxyz": write_extxyz,
    "matbench": write_matbench,
    "optimade-jsonl": write_optimade_jsonl,
    "parquet": write_parquet,
}
