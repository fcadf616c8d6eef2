"""SchNet as used for OMDB-GAP1, on the stored periodic quotient graphs.

Schütt et al.'s continuous-filter convolution network, with the settings of the OMDB-GAP1
paper (Olsthoorn et al., 2019): cutoff 5 angstrom, embedding size F = 64, T = 3 interaction
blocks (1 to 6 allowed), a Gaussian radial basis over 0 to the cutoff, shifted softplus
activations, the cosine cutoff on every filter, and atom-wise outputs averaged over the cell,
so the band gap is intensive (a supercell predicts what its cell does).

The layers are torch_geometric's (`InteractionBlock`, whose `CFConv` applies the cosine
cutoff, `GaussianSmearing`, `ShiftedSoftplus`); the edges are those of the stored
``radius:CUTOFF`` quotient graph with their periodic image offsets (`graph_tensors.collate`).
Targets are learnt standardised; the mean and spread are buffers of the module, so a saved
state dict predicts in eV on its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import global_mean_pool
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock, ShiftedSoftplus

from crystaldb.core.graph_tensors import GraphBatch
from crystaldb.core.network_hypers import SchNetHypers

MAX_Z = 100  # embeddings for Z = 0..99: every element a stored structure can hold


class SchNet(nn.Module):
    """Atom embeddings, T residual interaction blocks, an atom-wise MLP, then the cell mean."""

    target_mean: torch.Tensor  # buffers: the training targets' mean and spread (eV)
    target_std: torch.Tensor

    def __init__(self, hypers: SchNetHypers) -> None:
        super().__init__()
        self.hypers = hypers
        self.embedding = nn.Embedding(MAX_Z, hypers.features)
        self.expansion = GaussianSmearing(0.0, hypers.cutoff, hypers.gaussians)
        self.interactions = nn.ModuleList(
            InteractionBlock(hypers.features, hypers.gaussians, hypers.filters, hypers.cutoff)
            for _ in range(hypers.interactions)
        )
        self.head = nn.Sequential(
            nn.Linear(hypers.features, hypers.features // 2),
            ShiftedSoftplus(),
            nn.Linear(hypers.features // 2, 1),
        )
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """(num_graphs,) standardised predictions; `in_ev` turns them into eV."""
        keep = graph.distances < self.hypers.cutoff  # a wider stored graph is cut here
        edge_index = graph.edge_index[:, keep]
        distances = graph.distances[keep]
        h = self.embedding(graph.atomic_numbers)
        basis = self.expansion(distances)
        for block in self.interactions:
            h = h + block(h, edge_index, distances, basis)
        atomwise = self.head(h).squeeze(-1)
        pooled = global_mean_pool(atomwise, graph.batch, size=graph.num_graphs)
        return pooled

    def in_ev(self, standardised: torch.Tensor) -> torch.Tensor:
        """Standardised outputs back in eV (not clipped)."""
        return standardised * self.target_std + self.target_mean
