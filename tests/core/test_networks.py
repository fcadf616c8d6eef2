"""SchNet and CGCNN on real JARVIS crystals: periodic tensors and the models' invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from crystaldb.core.cell import Cell
from crystaldb.core.graph_tensors import collate
from crystaldb.core.graphs import parse_recipe, quotient_graph
from crystaldb.core.network_hypers import (
    CGCNNHypers,
    EdgeMPNNHypers,
    HyperparameterError,
    SchNetHypers,
)
from crystaldb.core.networks import Network, forward_ev, make_hypers, make_model
from tests.jarvis import jarvis_cells

TINY = {
    "schnet": {"features": 16, "filters": 16, "interactions": 2, "gaussians": 16},
    "cgcnn": {"features": 16, "hidden": 32},
    "mpnn": {"features": 16, "interactions": 2, "gaussian_step": 0.4},
}


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    """A few real crystals of different sizes (2 to 12 sites)."""
    every, _ = jarvis_cells()
    return [every[i] for i in (29, 2, 8, 5)]


def _model(architecture: str) -> Network:
    torch.manual_seed(0)
    model = make_model(make_hypers(architecture, TINY[architecture]))
    model.target_mean.fill_(1.0)
    model.target_std.fill_(2.0)
    return model.double().eval()


def _predict(model: Network, cells: list[Cell]) -> np.ndarray:
    recipe = parse_recipe(model.hypers.recipe)
    graphs = [quotient_graph(c, recipe) for c in cells]
    with torch.no_grad():
        return forward_ev(model, collate(cells, graphs, dtype=torch.float64)).numpy()


def test_edge_vectors_are_periodic_and_match_the_stored_lengths(cells: list[Cell]) -> None:
    recipe = parse_recipe("radius:5.0")
    graphs = [quotient_graph(c, recipe) for c in cells]
    batch = collate(cells, graphs, dtype=torch.float64)
    lengths = np.concatenate([g.lengths for g in graphs])
    np.testing.assert_allclose(batch.distances.numpy(), lengths, atol=1e-5)
    assert batch.num_graphs == len(cells) and batch.num_nodes == sum(c.num_sites for c in cells)
    assert batch.batch.tolist() == [i for i, c in enumerate(cells) for _ in range(c.num_sites)]
    first = cells[0]  # a 2-site cell has edges to images of itself: only periodicity gives them
    assert first.num_sites == 2 and graphs[0].num_edges > 2
    assert (batch.distances > 0).all() and batch.edge_index.max() < batch.num_nodes


def _rotated(cell: Cell, seed: int) -> Cell:
    matrix = Rotation.random(random_state=seed).as_matrix()
    return Cell(cell.structure_id, cell.lattice @ matrix.T, cell.frac_coords, cell.atomic_numbers)


def _translated(cell: Cell) -> Cell:
    frac = (cell.frac_coords + np.array([0.31, -0.17, 0.52])) % 1.0
    return Cell(cell.structure_id, cell.lattice, frac, cell.atomic_numbers)


def _permuted(cell: Cell, seed: int) -> Cell:
    order = np.random.default_rng(seed).permutation(cell.num_sites)
    return Cell(
        cell.structure_id, cell.lattice, cell.frac_coords[order], cell.atomic_numbers[order]
    )


def _supercell(cell: Cell, reps: tuple[int, int, int]) -> Cell:
    shifts = np.array(
        [(a, b, c) for a in range(reps[0]) for b in range(reps[1]) for c in range(reps[2])]
    )
    frac = ((cell.frac_coords[None, :, :] + shifts[:, None, :]) / np.array(reps)).reshape(-1, 3)
    lattice = cell.lattice * np.array(reps)[:, None]
    numbers = np.tile(cell.atomic_numbers, len(shifts))
    return Cell(cell.structure_id, lattice, frac, numbers)


@pytest.mark.parametrize("architecture", ["schnet", "cgcnn", "mpnn"])
def test_invariant_under_rotation_translation_permutation_and_supercell(
    architecture: str, cells: list[Cell]
) -> None:
    model = _model(architecture)
    reference = _predict(model, cells)
    assert np.ptp(reference) > 1e-3  # different crystals, different outputs: not trivially equal
    for changed in (
        [_rotated(c, i) for i, c in enumerate(cells)],
        [_translated(c) for c in cells],
        [_permuted(c, i) for i, c in enumerate(cells)],
        [_supercell(c, (2, 1, 1)) for c in cells],
        [_supercell(c, (1, 2, 2)) for c in cells[:2]],
    ):
        np.testing.assert_allclose(_predict(model, changed), reference[: len(changed)], atol=1e-5)


def test_cgcnn_defaults_are_the_papers() -> None:
    hypers = CGCNNHypers()
    assert (hypers.recipe, hypers.gaussians, hypers.convolutions, hypers.hidden) == (
        "knn:12,8.0",
        41,
        3,
        128,
    )
    expansion = make_model(hypers).expansion
    centres = expansion.centres.numpy()  # type: ignore[operator, union-attr]
    assert centres[0] == 0 and centres[-1] == pytest.approx(8.0) and expansion.width == 0.2
    assert SchNetHypers().recipe == "radius:5.0" and SchNetHypers().interactions == 3
    mpnn = EdgeMPNNHypers()
    assert (mpnn.recipe, mpnn.interactions, mpnn.gaussians) == ("knn:24,8.0", 3, 81)


def test_mpnn_edge_states_depend_on_both_end_nodes(cells: list[Cell]) -> None:
    """The edge update sees the centre and the neighbour: change one, the edge state moves."""
    model = _model("mpnn")
    recipe = parse_recipe(model.hypers.recipe)
    batch = collate(cells[:1], [quotient_graph(cells[0], recipe)], dtype=torch.float64)
    update = model.edge_updates[0]  # type: ignore[union-attr, index]
    h = torch.randn(batch.num_nodes, 16, dtype=torch.float64)
    edges = torch.randn(batch.edge_index.shape[1], 16, dtype=torch.float64)
    before = update(h, edges, batch.edge_index)
    for end in (0, 1):  # row 0: the neighbour w; row 1: the centre v
        node = int(batch.edge_index[end, 0])
        moved = h.clone()
        moved[node] += 1.0
        after = update(moved, edges, batch.edge_index)
        touched = (batch.edge_index[0] == node) | (batch.edge_index[1] == node)
        assert not torch.allclose(after[touched], before[touched])
        torch.testing.assert_close(after[~touched], before[~touched])


def test_hyperparameters_out_of_range_are_refused() -> None:
    with pytest.raises(HyperparameterError, match="interactions"):
        SchNetHypers(interactions=7)
    with pytest.raises(HyperparameterError, match="hyperparameters: layers"):
        make_hypers("schnet", {"layers": 3})
    with pytest.raises(HyperparameterError, match="architecture: unknown 'megnet'"):
        make_hypers("megnet")


def test_cgcnn_refuses_elements_beyond_its_features(cells: list[Cell]) -> None:
    heavy = Cell(0, cells[0].lattice, cells[0].frac_coords, np.array([94, 8]))
    with pytest.raises(ValueError, match=r"Z = 1\.\.92"):
        _predict(_model("cgcnn"), [heavy])
