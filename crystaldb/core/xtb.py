"""GFN1-xTB band gaps with tblite: one structure in, the HOMO-LUMO gap and the SCF's record out.

The gap is read from tblite's orbital energies and occupations. tblite's periodic xTB
diagonalises the Hamiltonian at the Gamma point only (its API takes no k-points), so for a
crystal the "band gap" here is the gap at Gamma of the cell as given: a supercell samples more
of the Brillouin zone (its Gamma point folds in the primitive cell's k = G/2 points) and can
only give an equal or smaller gap. `XtbHypers.k_sampling` says so, and every stored value
carries it.

Occupations are spin-restricted (at most 2 per orbital), Fermi-smeared at the electronic
temperature. The HOMO is the highest orbital of the aufbau filling of the cell's electron
count, the LUMO the next one: with an even count, HOMO = orbital n/2 and LUMO = n/2 + 1. An
odd count (a radical, or a crystal whose H atoms were not located) has a half-filled level and
no restricted gap; it is refused as `open_shell`, never labelled with a made-up number.

tblite writes its SCF table through a logger: it is captured here (the iterations are counted
from it), so nothing reaches the worker's stdout.

`main` is a child-process entry point (JSON on stdin, JSON on stdout): the labelling job runs
each structure in its own interpreter so that a time limit can be enforced on native code and
a crash in it costs one structure.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from crystaldb.core.cell import Cell
from crystaldb.core.errors import CrystaldbError

HARTREE_EV = 27.211386245988  # CODATA 2018
BOHR_ANGSTROM = 0.529177210903  # CODATA 2018
KELVIN_HARTREE = 3.166808578545117e-6  # Boltzmann constant in Hartree per kelvin (tblite's)
METHODS = ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")
K_SAMPLINGS = ("gamma",)  # tblite's periodic xTB: the Gamma point of the cell as given
MAX_Z = 86  # GFN parametrisations stop at radon

# Reasons a structure gets no label (the job records them with the message).
NOT_CONVERGED = "not_converged"
OPEN_SHELL = "open_shell"
UNSUPPORTED = "unsupported_element"
TBLITE_ERROR = "tblite_error"

_SCF_ROW = re.compile(r"^\s*(\d+)\s+-?\d+\.\d+\s+[-+]?\d")


class XtbError(CrystaldbError):
    """Hyperparameters that cannot work, named as the user gave them."""


class XtbFailure(CrystaldbError):
    """A structure tblite gives no gap for: `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class XtbHypers:
    """How the gap is computed: everything that changes the number, recorded exactly."""

    method: str = "GFN1-xTB"
    electronic_temperature: float = 300.0  # kelvin (tblite's default, 9.5e-4 Hartree)
    accuracy: float = 1.0  # tblite's numerical thresholds for the SCF (smaller is tighter)
    max_iterations: int = 250  # SCF cycles before the structure counts as not converged
    k_sampling: str = "gamma"  # the only sampling tblite's periodic xTB offers

    def __post_init__(self) -> None:
        checks = (
            (self.method in METHODS, "--method", f"expected one of {', '.join(METHODS)}"),
            (
                math.isfinite(self.electronic_temperature) and self.electronic_temperature > 0,
                "--temperature",
                "the electronic temperature must be a positive number of kelvin",
            ),
            (
                math.isfinite(self.accuracy) and self.accuracy > 0,
                "--accuracy",
                "must be positive",
            ),
            (self.max_iterations >= 1, "--max-iterations", "must be at least 1"),
            (
                self.k_sampling in K_SAMPLINGS,
                "k_sampling",
                "tblite's periodic xTB samples the Gamma point only",
            ),
        )
        for ok, name, message in checks:
            if not ok:
                raise XtbError(f"{name}: {message} (got {asdict(self)})")

    @property
    def temperature_hartree(self) -> float:
        """The electronic temperature as tblite takes it."""
        return self.electronic_temperature * KELVIN_HARTREE

    def record(self) -> dict[str, Any]:
        """What the database stores: ours, and tblite's own settings, so neither is ambiguous."""
        return {
            **asdict(self),
            "k_points": [[0.0, 0.0, 0.0]],  # fractional, of the cell as stored
            "tblite": {
                "method": self.method,
                "temperature": self.temperature_hartree,
                "accuracy": self.accuracy,
                "max-iter": self.max_iterations,
            },
        }


@dataclass(frozen=True)
class XtbResult:
    """One structure's gap and what the SCF did; energies in eV unless named otherwise."""

    band_gap: float  # LUMO - HOMO at the sampled k-points, eV
    homo: float  # eV
    lumo: float  # eV
    homo_occupation: float  # electrons in the HOMO (2 at T -> 0)
    lumo_occupation: float
    total_energy: float  # Hartree, as tblite reports it
    scf_iterations: int
    converged: bool
    n_electrons: int
    n_orbitals: int
    periodic: bool
    k_points: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),)
    seconds: float = field(default=0.0, compare=False)  # wall time of the SCF
    log_tail: list[str] = field(default_factory=list, compare=False)

    def parameters(self, hypers: XtbHypers) -> dict[str, Any]:
        """The calculation row's parameters: hyperparameters, sampling and the SCF's outcome."""
        return {
            "hyperparameters": hypers.record(),
            "k_sampling": hypers.k_sampling,
            "k_points": [list(k) for k in self.k_points],
            "periodic": self.periodic,
            "scf_iterations": self.scf_iterations,
            "converged": self.converged,
            "total_energy_hartree": self.total_energy,
            "homo_ev": self.homo,
            "lumo_ev": self.lumo,
            "n_electrons": self.n_electrons,
            "seconds": round(self.seconds, 3),
        }


def tblite_version() -> str:
    """The tblite library's version, as its package metadata gives it."""
    from importlib.metadata import version

    return version("tblite")


def _arrays(structure: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Atomic numbers, Cartesian positions (angstrom), lattice (or None) and periodicity.

    A `Cell` is periodic in all three directions; ASE Atoms say it with their `pbc`.
    """
    if isinstance(structure, Cell):
        return (
            np.asarray(structure.atomic_numbers, dtype=np.int32),
            np.asarray(structure.positions, dtype=np.float64),
            np.asarray(structure.lattice, dtype=np.float64),
            np.ones(3, dtype=bool),
        )
    numbers = np.asarray(structure.numbers, dtype=np.int32)
    positions = np.asarray(structure.positions, dtype=np.float64)
    periodic = np.asarray(structure.pbc, dtype=bool)
    lattice = np.asarray(structure.cell, dtype=np.float64) if periodic.any() else None
    return numbers, positions, lattice, periodic


def compute_gap(structure: Cell | Any, hypers: XtbHypers | None = None) -> XtbResult:
    """The HOMO-LUMO gap of a `Cell` (periodic) or ASE Atoms (periodic as their pbc says).

    Raises XtbFailure with its reason when tblite gives no gap (SCF not converged, an odd
    electron count, an element GFN does not cover, any other tblite error).
    """
    from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError
    from tblite.interface import Calculator

    hypers = hypers or XtbHypers()
    numbers, positions, lattice, periodic = _arrays(structure)
    if len(numbers) == 0:
        raise XtbFailure(TBLITE_ERROR, "no atoms")
    beyond = sorted({int(z) for z in numbers if z < 1 or z > MAX_Z})
    if beyond:
        raise XtbFailure(UNSUPPORTED, f"{hypers.method} covers Z = 1-{MAX_Z}; this has Z {beyond}")
    log: list[str] = []
    start = time.perf_counter()
    try:
        calc = Calculator(
            hypers.method,
            numbers,
            positions / BOHR_ANGSTROM,
            lattice=None if lattice is None else lattice / BOHR_ANGSTROM,
            periodic=periodic if periodic.any() else None,
            color=False,
            logger=log.append,
        )
        calc.set("verbosity", 1)  # the SCF table, which the logger captures: iterations
        calc.set("temperature", hypers.temperature_hartree)
        calc.set("accuracy", hypers.accuracy)
        calc.set("max-iter", hypers.max_iterations)
        result = calc.singlepoint()
        energies = np.asarray(result.get("orbital-energies"), dtype=np.float64)
        occupations = np.asarray(result.get("orbital-occupations"), dtype=np.float64)
        energy = float(result.get("energy"))
    except (TBLiteRuntimeError, TBLiteValueError) as exc:
        text = str(exc)
        reason = NOT_CONVERGED if "not converged" in text.lower() else TBLITE_ERROR
        raise XtbFailure(reason, f"tblite: {text}") from None
    seconds = time.perf_counter() - start
    iterations = scf_iterations(log)
    return _gap(energies, occupations, energy, iterations, bool(periodic.any()), seconds, log)


def _gap(
    energies: np.ndarray,
    occupations: np.ndarray,
    energy: float,
    iterations: int,
    periodic: bool,
    seconds: float,
    log: list[str],
) -> XtbResult:
    """HOMO and LUMO of the aufbau filling of the electron count the occupations sum to."""
    if energies.ndim != 1:  # spin-polarised results come as (2, n): not asked for here
        raise XtbFailure(TBLITE_ERROR, f"unexpected orbital energies of shape {energies.shape}")
    n_electrons = round(float(occupations.sum()))
    if n_electrons % 2:
        raise XtbFailure(
            OPEN_SHELL,
            f"odd electron count ({n_electrons}): a half-filled level has no spin-restricted "
            "gap (a radical, or H atoms missing from the structure)",
        )
    homo_index = n_electrons // 2 - 1
    if homo_index < 0 or homo_index + 1 >= len(energies):
        raise XtbFailure(
            TBLITE_ERROR,
            f"{n_electrons} electrons in {len(energies)} orbitals: no HOMO-LUMO pair",
        )
    order = np.argsort(energies, kind="stable")
    homo, lumo = order[homo_index], order[homo_index + 1]
    gap = float(energies[lumo] - energies[homo]) * HARTREE_EV
    return XtbResult(
        band_gap=gap,
        homo=float(energies[homo]) * HARTREE_EV,
        lumo=float(energies[lumo]) * HARTREE_EV,
        homo_occupation=float(occupations[homo]),
        lumo_occupation=float(occupations[lumo]),
        total_energy=energy,
        scf_iterations=iterations,
        converged=True,  # tblite raises when the SCF does not converge within max-iter
        n_electrons=n_electrons,
        n_orbitals=len(energies),
        periodic=periodic,
        seconds=seconds,
        log_tail=_tail(log),
    )


def scf_iterations(log: list[str]) -> int:
    """SCF cycles in tblite's table (one row per cycle: number, energy, errors)."""
    rows = [line for chunk in log for line in chunk.splitlines() if _SCF_ROW.match(line)]
    return len(rows)


def _tail(log: list[str], lines: int = 4) -> list[str]:
    flat = [line for chunk in log for line in chunk.splitlines() if line.strip()]
    return flat[-lines:]


# --- the child process the labelling job runs each structure in ---------------------------


def request(cell: Cell, hypers: XtbHypers) -> str:
    """The JSON a child process reads on stdin for one structure."""
    return json.dumps(
        {
            "structure_id": cell.structure_id,
            "lattice": np.asarray(cell.lattice).tolist(),
            "frac_coords": np.asarray(cell.frac_coords).tolist(),
            "atomic_numbers": np.asarray(cell.atomic_numbers).tolist(),
            "hypers": asdict(hypers),
        }
    )


def answer(text: str) -> dict[str, Any]:
    """Compute what a request asks; the result's fields, or {"reason", "message"}."""
    data = json.loads(text)
    cell = Cell(
        structure_id=int(data["structure_id"]),
        lattice=np.asarray(data["lattice"], dtype=np.float64).reshape(3, 3),
        frac_coords=np.asarray(data["frac_coords"], dtype=np.float64).reshape(-1, 3),
        atomic_numbers=np.asarray(data["atomic_numbers"], dtype=np.int64),
    )
    try:
        result = compute_gap(cell, XtbHypers(**data["hypers"]))
    except XtbFailure as failure:
        return {"reason": failure.reason, "message": failure.message}
    return {"result": asdict(result)}


def result_from(data: dict[str, Any]) -> XtbResult:
    """An XtbResult back from the child's JSON."""
    fields = dict(data)
    fields["k_points"] = tuple(tuple(k) for k in fields["k_points"])
    return XtbResult(**fields)


def main() -> None:
    """Child entry point: a request on stdin, its answer on the original stdout.

    Anything native code prints goes to stderr instead (file descriptor 1 is pointed there
    before tblite is loaded), so the answer is the only thing on stdout.
    """
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reply = json.dumps(answer(sys.stdin.read()))
    with os.fdopen(answer_fd, "w") as out:
        out.write(reply)


if __name__ == "__main__":
    main()
