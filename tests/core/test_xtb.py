"""GFN1-xTB band gaps with tblite: the checks a chemist would make, on real small crystals.

The main subject is (R/S)-1,1'-bi-2-naphthol, BINOL, C20H14O2: COD 2000642, one molecule per
triclinic cell (36 atoms), a closed-shell organic molecular crystal shipped in the package
sample. One GFN1-xTB call on it takes about a second on one core.
"""

from __future__ import annotations

import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list

from crystaldb.core.cell import Cell
from crystaldb.core.records import StructureRecord
from crystaldb.core.xtb import (
    NOT_CONVERGED,
    OPEN_SHELL,
    UNSUPPORTED,
    XtbError,
    XtbFailure,
    XtbHypers,
    XtbResult,
    _gap,
    answer,
    compute_gap,
    request,
    result_from,
    scf_iterations,
)
from crystaldb.formats.payload import process_file
from tests.realdata import SAMPLE

BINOL = SAMPLE / "cod" / "2000642.cif"


def cell_of(path: Path, structure_id: int = 1) -> Cell:
    """The first stored structure of a real file, as the jobs read it back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (record,) = [r for r in process_file(path) if isinstance(r, StructureRecord)]
    row = record.structures_row()
    return Cell(
        structure_id,
        np.asarray(row["lattice"], dtype=np.float64),
        np.asarray(row["frac_coords"], dtype=np.float64),
        np.asarray(row["atomic_numbers"], dtype=np.int64),
    )


@pytest.fixture(scope="module")
def binol() -> Cell:
    return cell_of(BINOL)


@pytest.fixture(scope="module")
def binol_gap(binol: Cell) -> XtbResult:
    return compute_gap(binol)


def whole_molecule(cell: Cell) -> Atoms:
    """The cell's one molecule made whole across the periodic boundaries, centred at 0."""
    atoms = Atoms(
        numbers=cell.atomic_numbers, cell=cell.lattice, scaled_positions=cell.frac_coords, pbc=True
    )
    i, j, shifts = neighbor_list("ijS", atoms, natural_cutoffs(atoms))
    image = {0: np.zeros(3)}
    queue = deque([0])
    while queue:  # walk the bonds, carrying each atom's lattice image
        a = queue.popleft()
        for b, s in zip(j[i == a], shifts[i == a], strict=True):
            if int(b) not in image:
                image[int(b)] = image[a] + s
                queue.append(int(b))
    assert len(image) == len(atoms), "BINOL's cell holds exactly one molecule"
    positions = atoms.positions + np.array([image[k] for k in range(len(atoms))]) @ cell.lattice
    return Atoms(numbers=atoms.numbers, positions=positions - positions.mean(axis=0))


def test_gap_is_positive_for_a_closed_shell_molecular_crystal(binol_gap: XtbResult) -> None:
    result = binol_gap
    assert result.converged and 0 < result.scf_iterations < XtbHypers().max_iterations
    assert result.n_electrons % 2 == 0  # closed shell: C20H14O2 has 2*(40+14+12)/2 = 66 pairs
    assert result.n_electrons == 4 * 20 + 14 + 6 * 2
    # an organic insulator: a gap of electron-volts, HOMO filled and LUMO empty at 300 K
    assert 1.0 < result.band_gap < 6.0
    assert result.homo_occupation == pytest.approx(2.0, abs=1e-6)
    assert result.lumo_occupation == pytest.approx(0.0, abs=1e-6)
    assert result.band_gap == pytest.approx(result.lumo - result.homo)
    assert result.periodic and result.k_points == ((0.0, 0.0, 0.0),)
    assert result.total_energy < 0


def test_rerun_reproduces_the_gap_and_energy(binol: Cell, binol_gap: XtbResult) -> None:
    again = compute_gap(binol)
    assert again == binol_gap  # every field but the wall time and log
    assert again.band_gap == binol_gap.band_gap
    assert again.total_energy == binol_gap.total_energy


def test_an_isolated_molecule_in_a_large_box_gives_the_molecular_gap(binol: Cell) -> None:
    """At the Gamma point of a 20 A box the molecule barely sees its images: periodic and
    molecular (non-periodic) tblite agree to a few meV (measured: 0.7 meV)."""
    molecule = whole_molecule(binol)
    molecular = compute_gap(molecule)
    assert not molecular.periodic
    boxed = Atoms(
        numbers=molecule.numbers, positions=molecule.positions + 10.0, cell=np.eye(3) * 20.0
    )
    boxed.pbc = True
    periodic = compute_gap(boxed)
    assert periodic.periodic
    assert periodic.band_gap == pytest.approx(molecular.band_gap, abs=0.005)
    assert periodic.n_electrons == molecular.n_electrons


@pytest.mark.slow
def test_a_supercell_gives_the_same_gap_within_the_k_sampling_tolerance(
    binol: Cell, binol_gap: XtbResult
) -> None:
    """The Gamma point of a 2x1x1 supercell is the primitive cell's k = (0,0,0) and (1/2,0,0)
    together: the supercell's HOMO is the higher and its LUMO the lower of the two, so its gap
    can only be equal or smaller; by how much is the band dispersion along a, small in a
    molecular crystal (measured: 0.07 eV). Allowed: 0 to 0.2 eV smaller; total energy per
    primitive cell within 2 mHa (measured: 1.1 mHa, the same sampling effect)."""
    lattice = binol.lattice * np.array([[2.0], [1.0], [1.0]])
    half = binol.frac_coords * np.array([0.5, 1.0, 1.0])
    supercell = Cell(
        2,
        lattice,
        np.vstack([half, half + np.array([0.5, 0.0, 0.0])]),
        np.concatenate([binol.atomic_numbers, binol.atomic_numbers]),
    )
    doubled = compute_gap(supercell)
    assert doubled.n_electrons == 2 * binol_gap.n_electrons
    assert binol_gap.band_gap - 0.2 <= doubled.band_gap <= binol_gap.band_gap + 1e-4
    assert doubled.total_energy / 2 == pytest.approx(binol_gap.total_energy, abs=2e-3)


def test_an_scf_that_does_not_converge_is_a_failure_with_its_reason(binol: Cell) -> None:
    with pytest.raises(XtbFailure) as caught:
        compute_gap(binol, XtbHypers(max_iterations=2))
    assert caught.value.reason == NOT_CONVERGED
    assert "not converged" in caught.value.message


def test_an_odd_electron_count_has_no_restricted_gap() -> None:
    """A half-filled level (a radical, a crystal with an H missing) is refused, not labelled."""
    energies = np.array([-0.5, -0.3, -0.1, 0.2])
    occupations = np.array([2.0, 2.0, 1.0, 0.0])
    with pytest.raises(XtbFailure) as caught:
        _gap(energies, occupations, -1.0, 5, True, 0.1, [])
    assert caught.value.reason == OPEN_SHELL
    closed = _gap(energies, np.array([2.0, 2.0, 0.0, 0.0]), -1.0, 5, True, 0.1, [])
    assert closed.band_gap == pytest.approx(0.2 * 27.211386245988)


def test_elements_beyond_the_parametrisation_are_refused_before_tblite() -> None:
    uranium = Atoms("U2", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(XtbFailure) as caught:
        compute_gap(uranium)
    assert caught.value.reason == UNSUPPORTED and "92" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"method": "GFN3-xTB"}, "--method"),
        ({"electronic_temperature": 0.0}, "--temperature"),
        ({"electronic_temperature": float("nan")}, "--temperature"),
        ({"accuracy": -1.0}, "--accuracy"),
        ({"max_iterations": 0}, "--max-iterations"),
        ({"k_sampling": "4x4x4"}, "Gamma point only"),
    ],
)
def test_hyperparameters_that_cannot_work_are_refused_by_name(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(XtbError, match=named):
        XtbHypers(**fields)  # type: ignore[arg-type]


def test_the_record_states_the_sampling_and_tblites_own_settings() -> None:
    record = XtbHypers().record()
    assert record["method"] == "GFN1-xTB" and record["k_sampling"] == "gamma"
    assert record["k_points"] == [[0.0, 0.0, 0.0]]
    assert record["tblite"]["temperature"] == pytest.approx(9.5e-4, rel=1e-3)  # 300 K
    assert record["tblite"]["max-iter"] == 250 and record["tblite"]["accuracy"] == 1.0


def test_scf_iterations_are_counted_from_tblites_table() -> None:
    log = [
        "------------------------------------------------------------\n"
        "  cycle        total energy    energy error   density error\n"
        "------------------------------------------------------------\n"
        "      1     -137.3822351323  -1.3833980E+02   6.4675319E-01\n"
        "      2     -139.5422758835  -2.1600408E+00   3.4051207E-01\n",
        "     11     -139.5802017392  -7.0709518E-09   7.3342777E-06",
        " total:                                   3.208 sec",
    ]
    assert scf_iterations(log) == 3


def test_the_child_protocol_round_trips_a_result(binol: Cell, binol_gap: XtbResult) -> None:
    reply = answer(request(binol, XtbHypers()))
    assert result_from(reply["result"]) == binol_gap
