"""crystaldb's provider fields that follow the data: a band gap field per functional the labels
hold and a predicted band gap per model, their names read at most once a minute per process
(listing the functionals scans the calculations)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from crystaldb.api.optimade.entries import BUILDERS, PREFIX, PROVIDER_FIELDS, Builder, Row
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.ml import Model, Prediction

GAP = f"{PREFIX}band_gap_"
PREDICTED = f"{PREFIX}predicted_band_gap_"
NAMES_TTL = 60.0  # seconds the functional and model names are reused
STATIC_GAP = "pbe"  # _crystaldb_band_gap_pbe: the functional "PBE" exactly, sortable
Definition = tuple[str, str, str | None]  # description, OPTIMADE type, unit


def suffix(name: str) -> str:
    """A stored name as a field name's tail: lowercased, non-alphanumerics as one "_"."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _grouped(prefix: str, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """field -> the stored names it stands for (two names may sanitise alike)."""
    groups: dict[str, tuple[str, ...]] = {}
    for name in sorted(names):
        tail = suffix(name)
        if tail:
            groups[prefix + tail] = (*groups.get(prefix + tail, ()), name)
    return groups


def _smallest(columns: tuple[str, ...]) -> Callable[[Row], Any]:
    """The smallest value among the columns (several functionals under one field)."""

    def build(row: Row) -> float | None:
        values = [row[c] for c in columns if row.get(c) is not None]
        return min(values) if values else None

    return build


@dataclass(frozen=True)
class Catalogue:
    """The data-driven provider fields: field -> stored functionals, field -> model names."""

    functionals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        """The catalogue as a dictionary key (compiled filters are kept per catalogue)."""
        return tuple(sorted(self.functionals.items())), tuple(sorted(self.models.items()))

    def builders(self) -> dict[str, Builder]:
        """Every served attribute: the static ones, then these."""
        found = dict(BUILDERS)
        for name, functionals in self.functionals.items():
            columns = tuple(f"gap:{f}" for f in functionals)
            found[name] = (columns, _smallest(columns))
        for name, models in self.models.items():
            columns = tuple(f"prediction:{m}" for m in models)
            found[name] = (columns, _smallest(columns))
        return found

    def definitions(self) -> dict[str, Definition]:
        """The provider fields for info/structures: the static ones, then these."""
        found = dict(PROVIDER_FIELDS)
        for name, functionals in self.functionals.items():
            text = f"DFT band gap with the {' / '.join(functionals)} functional"
            found[name] = (f"{text} (the smallest stored; a filter matches any)", "float", "eV")
        for name, models in self.models.items():
            text = f"band gap predicted by the model {' / '.join(models)}"
            found[name] = (f"{text} (the most recent prediction; a filter matches any)",
                           "float", "eV")  # fmt: skip
        return found


_CACHE: dict[int, tuple[float, Catalogue]] = {}  # engine id -> (when read, the catalogue)


def catalogue(session: Session) -> Catalogue:
    """The current catalogue, read at most once every NAMES_TTL seconds per engine."""
    engine = id(session.get_bind())
    now = time.monotonic()
    cached = _CACHE.get(engine)
    if cached is None or now - cached[0] > NAMES_TTL:
        cached = (now, _read(session))
        _CACHE[engine] = cached
    return cached[1]


def _read(session: Session) -> Catalogue:
    """The functionals of the band gap labels and the models with band gap predictions."""
    functionals = session.scalars(
        select(Calculation.functional)
        .distinct()
        .join(Label, Label.calculation_id == Calculation.id)
        .where(Label.property == "band_gap")
    )
    predicting = exists().where(Prediction.model_id == Model.id, Prediction.property == "band_gap")
    models = session.scalars(select(Model.name).where(predicting))
    gaps = _grouped(GAP, list(functionals))
    gaps.pop(GAP + STATIC_GAP, None)
    return Catalogue(gaps, _grouped(PREDICTED, list(models)))
