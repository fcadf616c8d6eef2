"""Split specifications: how a release's ordered members are assigned to train/valid/test.

    ordered:10000,2500           first 10000 train, next 2500 test (as OMDB-GAP1)
    ordered:8000,1000,3500       train, valid, test in order
    random:0.8,0.1,0.1:42        shuffled with seed 42, fractions of train, valid, test
    kfold:10:42                  fold-0 ... fold-9, shuffled with seed 42
    group-by:reduced_formula     whole groups kept on one side (0.8,0.1,0.1, seed 0)
    group-by:reduced_formula:0.8,0.2:7

Pure functions: the same spec and members always give the same assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystaldb.core.errors import CrystaldbError

GROUP_FIELDS = ("reduced_formula", "anonymous_formula", "spacegroup_number", "elements")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


class SplitError(CrystaldbError):
    """A --split that does not parse or does not fit the selection."""


@dataclass(frozen=True)
class SplitSpec:
    """A parsed --split value."""

    kind: str  # ordered, random, kfold, group-by
    counts: tuple[int, ...] = ()
    fractions: tuple[float, ...] = ()
    folds: int = 0
    seed: int = 0
    group_field: str | None = None
    text: str = ""


def split_names(n: int) -> tuple[str, ...]:
    """Two parts are train and test; three are train, valid and test."""
    if n == 2:
        return ("train", "test")
    if n == 3:
        return ("train", "valid", "test")
    raise SplitError(f"--split: expected 2 or 3 parts (train,test or train,valid,test), got {n}")


def parse_split(text: str) -> SplitSpec:
    """Parse a --split value, naming what is wrong with it."""
    kind, _, rest = text.strip().partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind == "ordered" and len(parts) == 1:
            counts = tuple(int(v) for v in parts[0].split(","))
            split_names(len(counts))
            if any(c < 0 for c in counts):
                raise ValueError("counts must be >= 0")
            return SplitSpec("ordered", counts=counts, text=text)
        if kind == "random" and len(parts) in (1, 2):
            fractions = _fractions(parts[0])
            seed = int(parts[1]) if len(parts) == 2 else 0
            return SplitSpec("random", fractions=fractions, seed=seed, text=text)
        if kind == "kfold" and len(parts) in (1, 2):
            folds = int(parts[0])
            if folds < 2:
                raise ValueError("kfold needs at least 2 folds")
            seed = int(parts[1]) if len(parts) == 2 else 0
            return SplitSpec("kfold", folds=folds, seed=seed, text=text)
        if kind == "group-by" and 1 <= len(parts) <= 3:
            if parts[0] not in GROUP_FIELDS:
                raise ValueError(f"group-by field must be one of {', '.join(GROUP_FIELDS)}")
            fractions = _fractions(parts[1]) if len(parts) >= 2 else DEFAULT_FRACTIONS
            seed = int(parts[2]) if len(parts) == 3 else 0
            return SplitSpec(
                "group-by", fractions=fractions, seed=seed, group_field=parts[0], text=text
            )
    except ValueError as exc:
        raise SplitError(f"--split {text}: {exc}") from None
    raise SplitError(
        f"--split {text}: expected ordered:N,M | random:F,F,F:SEED | kfold:K:SEED "
        "| group-by:FIELD[:F,F,F[:SEED]]"
    )


def _fractions(text: str) -> tuple[float, ...]:
    fractions = tuple(float(v) for v in text.split(","))
    split_names(len(fractions))
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions {text} must be >= 0 and sum to 1")
    return fractions


def assign(spec: SplitSpec, n: int, groups: Sequence[object] | None = None) -> list[str]:
    """The split name of each of n ordered members."""
    if spec.kind == "ordered":
        if sum(spec.counts) != n:
            raise SplitError(
                f"--split {spec.text}: the counts add up to {sum(spec.counts)}, "
                f"but the selection has {n} members"
            )
        names = split_names(len(spec.counts))
        return [name for name, count in zip(names, spec.counts, strict=True) for _ in range(count)]
    rng = np.random.default_rng(spec.seed)
    if spec.kind == "kfold":
        if n < spec.folds:
            raise SplitError(f"--split {spec.text}: {n} members cannot fill {spec.folds} folds")
        folds = np.empty(n, dtype=np.int64)
        folds[rng.permutation(n)] = np.arange(n) % spec.folds
        return [f"fold-{k}" for k in folds]
    if spec.kind == "random":
        return _by_fraction(rng.permutation(n).tolist(), [[i] for i in range(n)], spec, n)
    if groups is None or len(groups) != n:
        raise SplitError(f"--split {spec.text}: needs the group of every member")
    members_of: dict[object, list[int]] = {}
    for index, group in enumerate(groups):
        members_of.setdefault(group, []).append(index)
    keys = list(members_of)
    order = rng.permutation(len(keys)).tolist()
    return _by_fraction(order, [members_of[k] for k in keys], spec, n)


def _by_fraction(order: list[int], blocks: list[list[int]], spec: SplitSpec, n: int) -> list[str]:
    """Fill the splits in turn with whole blocks, in shuffled order, up to their fractions."""
    names = split_names(len(spec.fractions))
    targets = np.rint(np.cumsum(spec.fractions) * n).astype(int)
    out = [""] * n
    filled, part = 0, 0
    for block_index in order:
        while part < len(names) - 1 and filled >= targets[part]:
            part += 1
        for member in blocks[block_index]:
            out[member] = names[part]
        filled += len(blocks[block_index])
    return out
