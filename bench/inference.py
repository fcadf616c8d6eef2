"""SchNet and CGCNN inference and training speed on CPU, on OMDB-like real organic crystals.

Why: `crystaldb predict` must screen COD-size sets (260,000 structures) and the platform's
own work around the model (turning stored quotient graphs into batched tensors with periodic
edge vectors: `graph_tensors.collate`) must not cost much next to the network (goal: under
30% over the bare forward pass).

Structures: the real organic crystals of bench/soap.py (featomic's molecular crystals and
the COD CIFs with C and H that ingestion accepts), cycled (bench/common.py `cycled`) to a
mean of 82 atoms per cell, the OMDB-GAP1 mean. Models: the papers' sizes (SchNet F = 64,
T = 3, radius:5.0; CGCNN 64 features, 3 convolutions, knn:12,8.0; the edge-update MPNN,
C = 64, T = 3, knn:24,8.0), untrained (speed does not depend on the weights).

Measured, per model, on --structures structures in batches of --batch (the predict default):
  graphs      quotient_graph of every cell (what `crystaldb graphs build` stores; reported
              apart, as prediction reads stored graphs when there are some)
  assembly    collate: stored GraphArrays + cells -> batched tensors (edge vectors, batch)
  forward     the model on those tensors, no_grad, eval mode
  bare        the same forward on tensors built beforehand (the floor)
  overhead    (assembly + forward) / bare - 1
Training: one epoch (collate, forward, backward, Adam step, batches of 32) over --train
structures, extrapolated linearly to OMDB-GAP1's 12,500 (it is linear in structures).
Torch threads: --threads (1 = one Dask worker thread; training uses --train-threads).
Best of --repeat rounds.

With --device cuda (a machine with a GPU): the same inference figures on the GPU (timed with
torch.cuda.synchronize), the speedup over the CPU rows above, and the largest difference
between CPU and GPU predictions in eV (goal: under 1e-4 eV).

Usage: python bench/inference.py [--structures 512] [--train 256] [--batch 64] [--repeat 3]
                                 [--models schnet,cgcnn,mpnn] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from importlib import metadata

import numpy as np
import torch
from common import TARGET_MEAN_SITES, cycled  # bench/common.py
from soap import cell_of, organic_records  # bench/soap.py

from crystaldb.core.cell import Cell
from crystaldb.core.graph_tensors import collate
from crystaldb.core.graphs import GraphArrays, parse_recipe, quotient_graph
from crystaldb.core.networks import Network, forward_ev, make_hypers, make_model

OMDB_SIZE = 12_500


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive batches."""
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _sync(device: str) -> None:
    """Wait for the GPU's queued work, so wall times are the work's."""
    if device == "cuda":
        torch.cuda.synchronize()


def inference(
    model: Network,
    cells: list[Cell],
    graphs: list[GraphArrays],
    batch: int,
    repeat: int,
    device: str = "cpu",
) -> dict[str, float]:
    """Best-of-repeat seconds for assembly (incl. the copy to the device), forward, bare."""
    parts = chunks(len(cells), batch)
    built = [collate(cells[p], graphs[p]).to(device) for p in parts]
    best = {"assembly": np.inf, "forward": np.inf, "bare": np.inf}
    with torch.no_grad():
        for _ in range(repeat):
            assembly = forward = 0.0
            for p in parts:
                start = time.perf_counter()
                tensors = collate(cells[p], graphs[p]).to(device)
                _sync(device)
                middle = time.perf_counter()
                model(tensors)
                _sync(device)
                forward += time.perf_counter() - middle
                assembly += middle - start
            start = time.perf_counter()
            for tensors in built:
                model(tensors)
            _sync(device)
            bare = time.perf_counter() - start
            best = {
                "assembly": min(best["assembly"], assembly),
                "forward": min(best["forward"], forward),
                "bare": min(best["bare"], bare),
            }
    return best


def predictions(model: Network, cells: list[Cell], graphs: list[GraphArrays], device: str,
                batch: int) -> np.ndarray:  # fmt: skip
    """The model's outputs in eV (float64 on the host), for comparing devices."""
    model.to(device)
    with torch.no_grad():
        out = [
            forward_ev(model, collate(cells[p], graphs[p]).to(device)).double().cpu().numpy()
            for p in chunks(len(cells), batch)
        ]
    return np.concatenate(out)


def train_epoch(model: Network, cells: list[Cell], graphs: list[GraphArrays]) -> float:
    """Seconds for one training epoch (batches of 32) over the cells."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    targets = torch.rand(len(cells))
    model.train()
    order = np.random.default_rng(0).permutation(len(cells))
    start = time.perf_counter()
    for p in chunks(len(cells), 32):
        rows = order[p]
        tensors = collate([cells[i] for i in rows], [graphs[i] for i in rows])
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(tensors), targets[rows])
        loss.backward()
        optimiser.step()
    model.eval()
    return time.perf_counter() - start


def report(name: str, n: int, t: dict[str, float]) -> None:
    """Structures per second of each stage, and the platform's overhead over the bare forward."""
    overhead = (t["assembly"] + t["forward"]) / t["bare"] - 1
    print(
        f"  {name}\n"
        f"    assembly (collate, to device)      {n / t['assembly']:8.0f} structures/s\n"
        f"    forward                            {n / t['forward']:8.0f} structures/s\n"
        f"    assembly + forward                 "
        f"{n / (t['assembly'] + t['forward']):8.0f} structures/s\n"
        f"    bare forward on pre-built tensors  {n / t['bare']:8.0f} structures/s\n"
        f"    platform overhead                  {100 * overhead:8.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=512)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--models", default="schnet,cgcnn,mpnn")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch sees no GPU (torch.cuda.is_available() is False)")

    records = organic_records()
    cells = [cell_of(i, r) for i, r in enumerate(cycled(records, args.structures))]
    sites = np.mean([c.num_sites for c in cells])
    gpu = f", GPU {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(
        f"{datetime.date.today()} {platform.node()} {os.cpu_count()} cores{gpu}, torch "
        f"{torch.__version__}, torch_geometric {metadata.version('torch_geometric')}; "
        f"{len(records)} real organic crystals cycled to {len(cells)} structures, "
        f"{sites:.1f} sites each (target {TARGET_MEAN_SITES}), batches of {args.batch}"
    )
    n = len(cells)
    for architecture in args.models.split(","):
        torch.manual_seed(0)
        model = make_model(make_hypers(architecture)).eval()
        recipe = parse_recipe(model.hypers.recipe)
        start = time.perf_counter()
        graphs = [quotient_graph(c, recipe) for c in cells]
        graph_s = time.perf_counter() - start
        edges = sum(g.num_edges for g in graphs) / len(graphs)
        print(
            f"\n{architecture} ({recipe.name}, {edges:.0f} edges per structure)\n"
            f"  graphs (quotient_graph, stored once) {n / graph_s:8.0f} structures/s"
        )
        torch.set_num_threads(args.threads)
        on_cpu = inference(model, cells, graphs, args.batch, args.repeat)
        report(f"CPU, {args.threads} thread(s)", n, on_cpu)
        if args.device == "cuda":
            reference = predictions(model, cells, graphs, "cpu", args.batch)
            model.to("cuda")
            on_gpu = inference(model, cells, graphs, args.batch, args.repeat, "cuda")
            report("GPU", n, on_gpu)
            gap = np.abs(predictions(model, cells, graphs, "cuda", args.batch) - reference).max()
            speedup = (on_cpu["assembly"] + on_cpu["forward"]) / (
                on_gpu["assembly"] + on_gpu["forward"]
            )
            print(
                f"    speedup over CPU (assembly + forward) {speedup:6.1f} x\n"
                f"    largest |GPU - CPU| prediction      {gap:.2e} eV (goal < 1e-4)"
            )
            model.to("cpu")
        torch.set_num_threads(args.train_threads)
        subset = cells[: args.train]
        train_epoch(model, subset[:32], graphs[:32])  # warm-up
        seconds = train_epoch(model, subset, graphs[: len(subset)])
        print(
            f"  training: {seconds:.1f} s per epoch on {len(subset)} structures "
            f"({args.train_threads} threads) -> {seconds * OMDB_SIZE / len(subset) / 60:.1f} min "
            f"per epoch at OMDB-GAP1's {OMDB_SIZE:,}"
        )


if __name__ == "__main__":
    main()
