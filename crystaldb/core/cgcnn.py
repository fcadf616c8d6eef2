"""CGCNN (Xie and Grossman, 2018) on the stored periodic quotient graphs.

The crystal graph convolutional network as in its paper and reference code: each site's 12
nearest neighbours within 8 angstrom (the stored ``knn:12,8.0`` quotient graph, ties kept),
a Gaussian expansion of the distance with centres 0, 0.2, ..., 8 angstrom and width 0.2
angstrom, exp(-(d - mu)^2 / 0.2^2) (41 features, CGCNN's `GaussianDistance`), 3 gated
convolutions (torch_geometric's `CGConv`: sigmoid gate times softplus core, batch norm,
residual; each followed by a softplus as in CGCNN), mean pooling over the cell, one hidden
layer of 128 and a linear output.

Elemental features: CGCNN's own `atom_init.json` (92 categorical bins of group, period,
electronegativity, radius, ...) ships with no installed library, so the 92-long input
vector here is **a plain one-hot of the atomic number Z = 1..92**, as the issue allows. A
linear embedding of a one-hot is a table lookup, so it is computed as `nn.Embedding`
(identical maths, no 92-wide matrix product). Elements beyond uranium have no feature and
are refused with a clear error.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional
from torch_geometric.nn import CGConv, global_mean_pool

from crystaldb.core.graph_tensors import GraphBatch
from crystaldb.core.network_hypers import (
    ONE_HOT_ELEMENTS,
    CGCNNHypers,
)


class GaussianDistance(nn.Module):
    """CGCNN's distance expansion: exp(-(d - mu_k)^2 / width^2) for centres mu_k."""

    def __init__(self, hypers: CGCNNHypers) -> None:
        super().__init__()
        self.register_buffer(
            "centres", torch.arange(hypers.gaussians, dtype=torch.float32) * hypers.gaussian_step
        )
        self.width = hypers.gaussian_width

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """(E, gaussians) expanded distances."""
        centres: torch.Tensor = self.centres  # type: ignore[assignment]
        return torch.exp(-((distances.unsqueeze(-1) - centres) ** 2) / self.width**2)


class CGCNN(nn.Module):
    """Embedding, gated graph convolutions with batch norm, mean pooling, MLP head."""

    target_mean: torch.Tensor  # buffers: the training targets' mean and spread (eV)
    target_std: torch.Tensor

    def __init__(self, hypers: CGCNNHypers) -> None:
        super().__init__()
        self.hypers = hypers
        self.embedding = nn.Embedding(ONE_HOT_ELEMENTS + 1, hypers.features)  # row 0 unused
        self.expansion = GaussianDistance(hypers)
        self.convolutions = nn.ModuleList(
            CGConv(hypers.features, dim=hypers.gaussians, aggr="add", batch_norm=True)
            for _ in range(hypers.convolutions)
        )
        self.to_hidden = nn.Linear(hypers.features, hypers.hidden)
        self.out = nn.Linear(hypers.hidden, 1)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """(num_graphs,) standardised predictions; `in_ev` turns them into eV."""
        z = graph.atomic_numbers
        if z.numel() and (int(z.max()) > ONE_HOT_ELEMENTS or int(z.min()) < 1):
            raise ValueError(
                f"CGCNN's elemental features cover Z = 1..{ONE_HOT_ELEMENTS}; got Z = "
                f"{int(z.max()) if int(z.max()) > ONE_HOT_ELEMENTS else int(z.min())}"
            )
        keep = graph.distances <= self.hypers.max_radius
        edge_index = graph.edge_index[:, keep]
        attributes = self.expansion(graph.distances[keep])
        h = self.embedding(z)
        for convolution in self.convolutions:
            h = functional.softplus(convolution(h, edge_index, attributes))
        pooled = global_mean_pool(h, graph.batch, size=graph.num_graphs)
        hidden = functional.softplus(self.to_hidden(functional.softplus(pooled)))
        return self.out(hidden).squeeze(-1)

    def in_ev(self, standardised: torch.Tensor) -> torch.Tensor:
        """Standardised outputs back in eV (not clipped)."""
        return standardised * self.target_std + self.target_mean
