"""The OMDB-GAP1 release layout: structures.xyz, bandgaps.csv and CODids.csv, in the same order.

The three files describe one list: frame i of ``structures.xyz`` (extended XYZ), line i of
``bandgaps.csv`` (PBE band gap in eV, no header, written as ``%.18e``) and line i of
``CODids.csv`` (the COD id, no header).  A label that cannot be read, or files that do not
have the same number of entries, make the whole release untrustworthy, so those raise
IngestError (reasons ``missing_file``, ``bad_label``, ``layout_mismatch``) naming the file
and line; a single frame that is not a usable crystal is a per-entry Rejection as usual.

The ``omdb-gap1`` release writer writes the same layout plus a README.md, so that
`read_omdb_gap1` reads an export back: frames as in the ``extxyz`` format (a ``masses`` column
for isotopes) but untagged, every member with a finite gap >= 0 and a seven-digit COD id.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ase.io
from ase.data import atomic_numbers

from crystaldb.core.records import IngestError, ParsedStructure, Reason, Rejection
from crystaldb.core.release_data import (
    Member,
    ReleaseData,
    element_counts,
    label_statistics,
    labels_of,
    spacegroup_counts,
    split_structure_ids,
)
from crystaldb.formats.convert import parsed_from_atoms
from crystaldb.formats.extxyz import atoms_of, write_frames
from crystaldb.formats.identifiers import COD_ID, cod_id_from_tag
from crystaldb.formats.members import (
    ExportError,
    cod_id_of,
    label_of,
    numbers_of,
    text_file,
    who,
)

STRUCTURES = "structures.xyz"
BANDGAPS = "bandgaps.csv"
COD_IDS = "CODids.csv"
README = "README.md"
BAND_GAP = "band_gap"  # property key; PBE band gap in eV

T = TypeVar("T")


# --- reading ---------------------------------------------------------------------------------


def read_omdb_gap1(directory: str | os.PathLike[str]) -> list[ParsedStructure | Rejection]:
    """Read an OMDB-GAP1 folder into one entry per frame, with its COD id and band gap."""
    root = Path(directory)
    for name in (STRUCTURES, BANDGAPS, COD_IDS):
        if not (root / name).is_file():
            raise IngestError(Reason.MISSING_FILE, f"{root / name}: missing from the OMDB layout")
    gaps = read_column(root / BANDGAPS, _band_gap, "a band gap in eV (a number >= 0)")
    cod_ids = read_column(root / COD_IDS, _cod_id, "a COD id (seven digits)")
    structures = root / STRUCTURES
    try:
        frames = ase.io.read(structures, index=":", format="extxyz")
    except Exception as error:
        message = f"{structures}: not readable as extended XYZ: {type(error).__name__}: {error}"
        raise IngestError(Reason.PARSE_ERROR, message) from error
    if not len(frames) == len(gaps) == len(cod_ids):
        raise IngestError(
            Reason.LAYOUT_MISMATCH,
            f"{root}: {STRUCTURES} has {len(frames)} frames, {BANDGAPS} {len(gaps)} lines"
            f" and {COD_IDS} {len(cod_ids)} lines; they must match line for line",
        )
    with structures.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    results: list[ParsedStructure | Rejection] = []
    for entry, (atoms, gap, cod) in enumerate(zip(frames, gaps, cod_ids, strict=True)):
        try:
            parsed = parsed_from_atoms(
                atoms,
                str(structures),
                entry,
                external_ids={"cod": cod},
                properties={BAND_GAP: gap},
                sha256=sha256,
            )
            results.append(parsed)
        except IngestError as error:
            results.append(Rejection.from_error(error, str(structures), entry, sha256))
    return results


def read_column(path: Path, convert: Callable[[str], T], expected: str) -> list[T]:
    """One value per line, no header; trailing blank lines allowed, anything else is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    values: list[T] = []
    for number, line in enumerate(lines, start=1):
        try:
            values.append(convert(line.strip()))
        except ValueError as error:
            raise IngestError(
                Reason.BAD_LABEL, f"{path}:{number}: expected {expected}, got {line!r}"
            ) from error
    return values


def _band_gap(text: str) -> float:
    """A finite, non-negative band gap."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _cod_id(text: str) -> str:
    """A COD id as the string stored in external_ids."""
    cod = cod_id_from_tag(text)
    if cod is None:
        raise ValueError(text)
    return cod


# --- writing a release -----------------------------------------------------------------------


def write_omdb_gap1(data: ReleaseData, folder: Path) -> None:
    """structures.xyz, bandgaps.csv (%.18e), CODids.csv and README.md, line i = member i."""
    with text_file(folder / STRUCTURES) as handle:
        write_frames(handle, [atoms_of(m) for m in data.members])
    with text_file(folder / BANDGAPS) as handle:
        handle.writelines(f"{_gap_of(data, m):.18e}\n" for m in data.members)
    with text_file(folder / COD_IDS) as handle:
        handle.writelines(f"{_cod_of(data, m)}\n" for m in data.members)
    (folder / README).write_text(readme(data), encoding="utf-8")


def _gap_of(data: ReleaseData, member: Member) -> float:
    """A finite, non-negative gap: what read_omdb_gap1 accepts."""
    value = label_of(data, member, "omdb-gap1", required=True)
    assert value is not None
    if value < 0:
        raise ExportError(
            f"{who(data, member)}: band gap {value} is negative; omdb-gap1 needs gaps >= 0"
        )
    return value


def _cod_of(data: ReleaseData, member: Member) -> int:
    """A seven-digit COD id: what read_omdb_gap1 accepts."""
    cod = cod_id_of(member)
    if cod is None:
        raise ExportError(f"{who(data, member)}: has no COD id; omdb-gap1 needs one per member")
    if not COD_ID.fullmatch(cod):
        raise ExportError(f"{who(data, member)}: COD id {cod!r} is not seven digits")
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
    counts = split_structure_ids(data)
    listed = ", ".join(f"{len(ids)} {name}" for name, ids in counts.items())
    return f"{listed}, interleaved (manifest.json lists the structure ids of each split)"


def _readme_loading(data: ReleaseData) -> str:
    """The loading example, with slices when the splits are contiguous blocks."""
    lines = [
        "```python",
        "import ase.io",
        "import numpy as np",
        "",
        f"structures = ase.io.read('{STRUCTURES}', index=':')",
        f"band_gaps = np.loadtxt('{BANDGAPS}')",
        f"cod_ids = np.loadtxt('{COD_IDS}', dtype=int)",
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
    stats = label_statistics(labels_of(data))
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


def readme(data: ReleaseData) -> str:
    """README.md of an OMDB-GAP1 folder: files, contents, label statistics, split, method."""
    n = len(data.members)
    name = data.label_property or "label"
    unit = data.label_unit or ""
    in_unit = f" in {unit}" if unit else ""
    spec = f" (split spec `{data.split_spec}`)" if data.split_spec else ""
    elements = element_counts(data)
    symbols = sorted((s for s, _ in elements), key=lambda s: (atomic_numbers.get(s, 999), s))
    spacegroups = spacegroup_counts(data)
    sites = [len(numbers_of(m)) for m in data.members]
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
        f"| `{STRUCTURES}` | {n} structures in extended XYZ (`Lattice`, cartesian positions"
        ' in Å, `pbc="T T T"`), in release order |',
        f"| `{BANDGAPS}` | {n} {name} values{in_unit}, one per line, no header,"
        " written as `%.18e` |",
        f"| `{COD_IDS}` | {n} COD ids (Crystallography Open Database), one integer per line,"
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
