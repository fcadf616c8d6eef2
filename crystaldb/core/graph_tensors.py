"""Quotient graphs as batched torch tensors: the one place the models' periodic geometry is made.

`collate` turns cells and their stored quotient graphs (`GraphArrays`) into one disjoint-union
batch: atomic numbers, an edge index in torch_geometric's convention, edge vectors, distances
and the batch vector. Edge e of a stored graph joins site i = src[e] to the image n = images[e]
of site j = dst[e]; its vector is r_j + n . lattice - r_i, computed here in float64 from the
cell (so the distances are periodic by construction, never from a non-periodic radius search)
and only then cast to the model's dtype.

In the edge index, row 0 is the message's source and row 1 its target (torch_geometric's
``source_to_target`` flow): the neighbour j sends to the centre i, so a site aggregates over
its own neighbour list, which matters for the asymmetric knn graphs of CGCNN.

Pure: no database, no Dask; the workers and the training loop both call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crystaldb.core.cell import Cell
from crystaldb.core.graphs import GraphArrays


@dataclass(frozen=True)
class GraphBatch:
    """A batch of periodic graphs as one disconnected graph."""

    atomic_numbers: torch.Tensor  # (N,) int64
    edge_index: torch.Tensor  # (2, E) int64: row 0 neighbour j (source), row 1 centre i
    vectors: torch.Tensor  # (E, 3) r_j + n . lattice - r_i, angstrom
    distances: torch.Tensor  # (E,) angstrom
    batch: torch.Tensor  # (N,) int64: graph of each node
    num_graphs: int

    @property
    def num_nodes(self) -> int:
        """Atoms in the batch."""
        return int(self.atomic_numbers.shape[0])

    def to(self, device: torch.device | str) -> GraphBatch:
        """The same batch on another device."""
        return GraphBatch(
            atomic_numbers=self.atomic_numbers.to(device),
            edge_index=self.edge_index.to(device),
            vectors=self.vectors.to(device),
            distances=self.distances.to(device),
            batch=self.batch.to(device),
            num_graphs=self.num_graphs,
        )


def edge_vectors(cells: Sequence[Cell], graphs: Sequence[GraphArrays]) -> np.ndarray:
    """(E, 3) float64 edge vectors of the concatenated graphs, from the cells' geometry."""
    if not graphs:
        return np.zeros((0, 3))
    positions = [c.positions for c in cells]
    offsets = np.cumsum([0] + [len(p) for p in positions[:-1]])
    every_position = np.concatenate(positions)
    owner = np.repeat(np.arange(len(graphs)), [g.num_edges for g in graphs])
    src = np.concatenate([g.src.astype(np.int64) + o for g, o in zip(graphs, offsets, strict=True)])
    dst = np.concatenate([g.dst.astype(np.int64) + o for g, o in zip(graphs, offsets, strict=True)])
    images = np.concatenate([g.images for g in graphs]).astype(np.float64)
    lattices = np.stack([c.lattice for c in cells])
    shift = np.einsum("ek,ekl->el", images, lattices[owner])
    return every_position[dst] + shift - every_position[src]


def collate(
    cells: Sequence[Cell], graphs: Sequence[GraphArrays], dtype: torch.dtype = torch.float32
) -> GraphBatch:
    """One batch from cells and their graphs (same order, same structures)."""
    if len(cells) != len(graphs):
        raise ValueError(f"{len(cells)} cells but {len(graphs)} graphs")
    for cell, graph in zip(cells, graphs, strict=True):
        if cell.structure_id != graph.structure_id or cell.num_sites != graph.num_nodes:
            raise ValueError(
                f"structure {cell.structure_id} ({cell.num_sites} sites) does not match its "
                f"graph (structure {graph.structure_id}, {graph.num_nodes} nodes)"
            )
    sizes = np.array([c.num_sites for c in cells], dtype=np.int64)
    offsets = np.cumsum(sizes) - sizes
    if graphs:
        centre = np.concatenate(
            [g.src.astype(np.int64) + o for g, o in zip(graphs, offsets, strict=True)]
        )
        neighbour = np.concatenate(
            [g.dst.astype(np.int64) + o for g, o in zip(graphs, offsets, strict=True)]
        )
        numbers = np.concatenate([c.atomic_numbers for c in cells]).astype(np.int64)
    else:
        centre = neighbour = numbers = np.zeros(0, dtype=np.int64)
    vectors = edge_vectors(cells, graphs)
    distances = np.sqrt((vectors**2).sum(axis=1))
    return GraphBatch(
        atomic_numbers=torch.from_numpy(numbers),
        edge_index=torch.from_numpy(np.stack([neighbour, centre])),
        vectors=torch.from_numpy(vectors).to(dtype),
        distances=torch.from_numpy(distances).to(dtype),
        batch=torch.from_numpy(np.repeat(np.arange(len(cells), dtype=np.int64), sizes)),
        num_graphs=len(cells),
    )
