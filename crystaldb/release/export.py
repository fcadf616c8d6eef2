"""Exports: a frozen ReleaseData to a folder of files, byte-identical on every run.

``export_release(data, fmt, out)`` writes the format's files (its writer in
``crystaldb.formats``), the figures (plots.py) and ``manifest.json`` (manifest.py) into a
hidden sibling of `out`, then renames it to `out`: the rename is atomic (same parent, same
filesystem), so a failed export leaves neither `out` nor the temporary folder behind. Nothing
written depends on the time, the host or dict/set iteration order; cartesian positions are
computed with elementwise IEEE operations (no BLAS) so they do not depend on the CPU either.
Formats, each in its module:

- ``omdb-gap1`` (formats/omdb_gap1.py): the OMDB-GAP1 v1.1 layout (structures.xyz,
  bandgaps.csv, CODids.csv, README.md), readable by ``read_omdb_gap1``.
- ``extxyz`` (formats/extxyz.py): structures.extxyz, every member with structure_id, split,
  label and COD id.
- ``matbench`` (formats/matbench.py): <name>.json.gz as matminer/matbench store datasets,
  metadata.json and folds.json.
- ``optimade-jsonl`` (formats/optimade_jsonl.py): optimade.jsonl, one OPTIMADE structures
  resource per line after the ``x-optimade`` header line and the structures info line.
- ``parquet`` (formats/parquet.py): members.parquet, one row per member.
- ``chemiscope`` (formats/chemiscope.py): <name>.chemiscope.json.gz, the kernel map of the
  members as a chemiscope dataset (cells, map coordinates, band gaps, predictions, split);
  it needs a `KernelMap` (a stored embedding of the members, `jobs.embeddings.load_map`).

Isotopes get a ``masses`` column in extended XYZ (``extxyz`` and ``omdb-gap1``); the other
formats write the natural elements only. A label is a finite number or absent: NaN or infinite
labels are refused by every format, and omdb-gap1 and matbench need a label on every member.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from crystaldb.core.release_data import ReleaseData
from crystaldb.formats.chemiscope import KernelMap, write_chemiscope
from crystaldb.formats.extxyz import write_extxyz
from crystaldb.formats.matbench import write_matbench
from crystaldb.formats.members import ExportError
from crystaldb.formats.omdb_gap1 import write_omdb_gap1
from crystaldb.formats.optimade_jsonl import write_optimade_jsonl
from crystaldb.formats.parquet import write_parquet
from crystaldb.release import manifest, plots

__all__ = ["FORMATS", "WRITERS", "ExportError", "export_release"]

WRITERS: dict[str, Callable[[ReleaseData, Path], None]] = {
    "omdb-gap1": write_omdb_gap1,
    "extxyz": write_extxyz,
    "matbench": write_matbench,
    "optimade-jsonl": write_optimade_jsonl,
    "parquet": write_parquet,
}
# formats drawn on a stored kernel map of the members, given to `export_release`
MAP_WRITERS: dict[str, Callable[[ReleaseData, Path, KernelMap], None]] = {
    "chemiscope": write_chemiscope,
}
FORMATS = (*WRITERS, *MAP_WRITERS)


def export_release(
    data: ReleaseData, fmt: str, out: Path, kernel_map: KernelMap | None = None
) -> list[Path]:
    """Write `data` in format `fmt` as the new folder `out`, all or nothing; return its files.
    `kernel_map`, a stored embedding covering the members, is what `chemiscope` draws."""
    out = Path(out)
    _check_request(data, fmt, out, kernel_map)
    target = Path(os.path.abspath(out))
    try:
        staging = _staging_folder(target)
    except OSError as error:
        raise ExportError(f"--out {out}: {error}") from error
    try:
        if fmt in MAP_WRITERS:
            assert kernel_map is not None  # _check_request says so otherwise
            MAP_WRITERS[fmt](data, staging, kernel_map)
        else:
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


def _check_request(data: ReleaseData, fmt: str, out: Path, kernel_map: KernelMap | None) -> None:
    """Refuse an unknown format, an empty release, a map format without a map, or an `out`
    that holds anything."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if not data.members:
        raise ExportError(f"release {data.name} {data.version} has no members")
    if fmt in MAP_WRITERS and kernel_map is None:
        raise ExportError(
            f"--format {fmt}: draws a stored kernel map of release {data.name} {data.version}"
            f" and none is given: `crystaldb kernel build --release {data.name}:{data.version}`,"
            " then `crystaldb kernel embed --kernel ID`"
        )
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
