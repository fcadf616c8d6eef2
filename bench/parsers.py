"""CIF parsing throughput, single process: gemmi, crystaldb's ingestion path, pymatgen, ASE.

Why: the ingest path uses gemmi with a pymatgen fallback; this shows what that buys and
what validation, symmetry and the fingerprint cost on top of parsing.

Methods, all reading the same files from disk (page cache warmed first):
  gemmi parse      gemmi.cif.read + make_small_structure_from_block (asymmetric unit only)
  gemmi expand     the same + get_all_unit_cell_sites (full cell)
  crystaldb read   crystaldb.formats.payload.parse_file (size/binary/UTF-8 checks, gemmi, fallback)
  crystaldb full   crystaldb.formats.payload.process_file (read + validate + spglib + fingerprint)
  pymatgen         CifParser(path).parse_structures(primitive=False)
  ase              ase.io.read(path, index=":", format="cif")

pymatgen and ASE are slow on the large P1 COF cells (ASE about 1 file/s), so every method
is timed on the first --slow-files files of each set, and the fast ones also on the whole
set; the ratios compare rates on the identical subset.

Usage: python bench/parsers.py [--cofs 300] [--cod 229] [--slow-files 60]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import ase.io
import gemmi
from pymatgen.io.cif import CifParser

from crystaldb.formats.payload import parse_file, process_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
Method = Callable[[Path], object]
GEMMI_VERSION = getattr(gemmi, "__version__", "?")


def gemmi_parse(path: Path) -> object:
    """Asymmetric unit only: the floor for any gemmi-based reader."""
    return [gemmi.make_small_structure_from_block(b) for b in gemmi.cif.read(str(path))]


def gemmi_expand(path: Path) -> object:
    """Asymmetric unit expanded to the full cell."""
    return [s.get_all_unit_cell_sites() for s in gemmi_parse(path)]  # type: ignore[attr-defined]


def pymatgen_parse(path: Path) -> object:
    """pymatgen's CIF reader, full cell."""
    return CifParser(path).parse_structures(primitive=False)


def ase_parse(path: Path) -> object:
    """ASE's CIF reader, every block."""
    return ase.io.read(path, index=":", format="cif")


FAST: dict[str, Method] = {
    "gemmi parse": gemmi_parse,
    "gemmi expand": gemmi_expand,
    "crystaldb read": parse_file,
    "crystaldb full": process_file,
}
SLOW: dict[str, Method] = {"pymatgen": pymatgen_parse, "ase": ase_parse}


def rate(method: Method, files: list[Path]) -> tuple[float, int]:
    """Files per second over `files`, and how many raised (timed all the same)."""
    failures = 0
    start = time.perf_counter()
    for path in files:
        try:
            method(path)
        except Exception:
            failures += 1
    return len(files) / (time.perf_counter() - start), failures


def bench(name: str, files: list[Path], slow_files: int) -> None:
    """Print one table for one set of files."""
    subset = files[:slow_files]
    for path in files:  # warm the page cache so the first method is not penalised
        path.read_bytes()
    print(f"\n{name}: {len(files)} files (all), first {len(subset)} for the ratios")
    print(
        f"{'method':<16}{'files/s all':>12}{'files/s sub':>13}{'x pymatgen':>12}{'x ase':>8}"
        f"{'fails':>7}"
    )
    on_subset = {m: rate(f, subset) for m, f in {**FAST, **SLOW}.items()}
    on_all = {m: rate(f, files) for m, f in FAST.items()}
    for method in (*FAST, *SLOW):
        sub, fails = on_subset[method]
        whole = f"{on_all[method][0]:12.1f}" if method in on_all else f"{'-':>12}"
        fails = on_all[method][1] if method in on_all else fails
        print(
            f"{method:<16}{whole}{sub:13.1f}{sub / on_subset['pymatgen'][0]:12.1f}"
            f"{sub / on_subset['ase'][0]:8.1f}{fails:7d}"
        )


def main() -> None:
    """Run the benchmark on the shared COF and COD sets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cofs", type=int, default=300, help="number of COF CIFs")
    parser.add_argument("--cod", type=int, default=229, help="number of COD CIFs")
    parser.add_argument("--slow-files", type=int, default=60, help="files per set for ratios")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"{os.cpu_count()} CPUs  Python {platform.python_version()}  gemmi {GEMMI_VERSION}"
    )
    cofs = sorted((DATA / "cofs" / "cifs").glob("*.cif"))[: args.cofs]
    cod = sorted((DATA / "cod").glob("*.cif"))[: args.cod]
    bench("CURATED-COFs (P1, large organic cells)", cofs, args.slow_files)
    bench("COD (symmetry, disorder, deliberately broken files)", cod, args.slow_files)


if __name__ == "__main__":
    main()
