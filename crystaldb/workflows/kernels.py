"""Which structures a kernel's columns are: landmarks of a train split, or the whole split."""

from __future__ import annotations

from dataclasses import dataclass

from crystaldb.jobs.kernels import Landmarks, choose_landmarks
from crystaldb.platform.database import Database
from crystaldb.query.selection import select_structures


@dataclass(frozen=True)
class KernelColumns:
    """The columns of a rectangular kernel (None: square over its rows) and how they were drawn."""

    ids: list[int] | None
    landmarks: Landmarks | None = None


def kernel_columns(
    db: Database, release: str | None, landmarks: int | None, seed: int
) -> KernelColumns:
    """M landmarks drawn from the release's train split, else that whole split, else square."""
    if release is None:
        return KernelColumns(None)
    if landmarks is not None:
        chosen = choose_landmarks(db, release, landmarks, seed)
        return KernelColumns(chosen.ids, chosen)
    return KernelColumns(train_split(db, release))


def train_split(db: Database, release: str) -> list[int]:
    """The release's train structures in member order: the columns a model was trained on."""
    target = select_structures(db, release=release)
    return [
        s
        for s, split in zip(target.structure_ids, target.splits or (), strict=True)
        if split == "train"
    ]
