"""Mutations: predicting the band gap of an uploaded structure (API token required).

The upload goes through the same reader and checks as `crystaldb ingest` (a refused file is
refused here with the same reason), then through the chosen trained models, in a worker
thread so the server keeps answering. Nothing is stored unless the client asks (`store`);
then the structure is ingested (or found, when the database already holds it) and the
predictions are written with a run, like any other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import strawberry
from sqlalchemy import select
from strawberry.file_uploads import Upload

from crystaldb.api.auth import RequiresToken, authenticate
from crystaldb.api.errors import ApiError
from crystaldb.api.types import Info, ModelType
from crystaldb.core.cell import Cell
from crystaldb.core.records import Rejection, StructureRecord
from crystaldb.core.validate import DEFAULT_LIMITS
from crystaldb.formats.files import Payload
from crystaldb.formats.payload import process_payload
from crystaldb.jobs.load import write_chunk
from crystaldb.jobs.models import ModelError
from crystaldb.jobs.predict import ensemble_spread, predict_cell
from crystaldb.jobs.predictions import write_predictions
from crystaldb.platform.database import Database
from crystaldb.platform.settings import Settings
from crystaldb.schema import IngestBatch, Model, Structure
from crystaldb.schema.runs import track_run

MAX_UPLOAD_BYTES = 5 << 20  # a CIF of one structure is kilobytes; refuse what is clearly not


@strawberry.type
class ModelPrediction:
    """One model's estimate for the uploaded structure."""

    value: float = strawberry.field(description="Band gap in eV, clipped at 0.")
    unit: str
    model: ModelType


@strawberry.type
class BandGapPrediction:
    """What the upload was read as, and the predictions for it."""

    reduced_formula: str
    nsites: int
    spacegroup_symbol: str | None
    spacegroup_number: int | None
    predictions: list[ModelPrediction]
    mean: float = strawberry.field(description="Mean over the models (eV).")
    spread: float | None = strawberry.field(
        description=(
            "Population standard deviation of the models' values (eV), the uncertainty"
            " `crystaldb predict --ensemble` stores; null for one model."
        )
    )
    structure_id: strawberry.ID | None = strawberry.field(
        description="Set when `store` was true: the stored (or already known) structure."
    )


class UploadRefused(ApiError):
    """The readers refused the upload: their message, and their reason code in extensions."""

    def __init__(self, argument: str, rejection: Rejection) -> None:
        super().__init__(f"{argument}: cannot be used: {rejection.message}")
        self.extensions = {"code": "UPLOAD_REFUSED", "reason": rejection.reason}


@dataclass(frozen=True)
class _Outcome:
    record: StructureRecord
    models: list[Any]
    values: list[float]
    structure_id: int | None


@dataclass(frozen=True)
class _Upload:
    """The structure file as received: which argument carried it, its name and its bytes."""

    argument: str  # "cif" (text in the query's variables) or "file" (a multipart upload)
    name: str  # the file name the readers go by (its suffix picks the format)
    data: bytes


def _read_upload(upload: _Upload) -> StructureRecord:
    """The one structure of the file, or an ApiError with the reader's own reason."""
    data, argument = upload.data, upload.argument
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(f"{argument}: more than the {MAX_UPLOAD_BYTES} bytes accepted")
    entries = process_payload(Payload(upload.name, data), DEFAULT_LIMITS, None)
    records = [e for e in entries if isinstance(e, StructureRecord)]
    refused = [e for e in entries if isinstance(e, Rejection)]
    if refused and not records:
        raise UploadRefused(argument, refused[0])
    if not records:
        raise ApiError(f"{argument}: cannot be used: no structure in it")
    if len(entries) > 1:
        raise ApiError(
            f"{argument}: holds {len(entries)} structures; upload one structure at a time"
        )
    return records[0]


async def _received(cif: str | None, file: Upload | None) -> _Upload:
    """Exactly one of the two ways to send a structure, read (at most the size accepted)."""
    if (cif is None) == (file is None):
        raise ApiError(
            "give the structure either as `cif` (the file's text) or as `file` (a multipart "
            "upload of a CIF, extended XYZ, POSCAR or JSON file), not both and not neither"
        )
    if cif is not None:
        return _Upload("cif", "upload.cif", cif.encode("utf-8"))
    received: Any = file  # on ASGI servers, starlette's UploadFile
    data = await received.read(MAX_UPLOAD_BYTES + 1)
    name = Path(getattr(received, "filename", None) or "upload.cif").name
    return _Upload("file", name, data)


def _models(db: Database, names: list[str] | None) -> list[Any]:
    """The named models, or the newest KRR model when none is named."""
    with db.session() as session:
        query = select(Model).where(Model.architecture == "krr")
        if names:
            found = {m.name: m for m in session.scalars(select(Model).where(Model.name.in_(names)))}
            unknown = [n for n in names if n not in found]
            if unknown:
                raise ApiError(f"models: no model named {', '.join(map(repr, unknown))}")
            rows = [found[n] for n in names]
        else:
            newest = session.scalars(query.order_by(Model.id.desc())).first()
            if newest is None:
                raise ApiError(
                    "no trained model to predict with: train one (`crystaldb train krr`)"
                )
            rows = [newest]
        session.expunge_all()
    return rows


def _predict(
    db: Database,
    settings: Settings,
    upload: _Upload,
    names: list[str] | None,
    store: bool,
    who: str,
) -> _Outcome:
    """Read, predict with every model, and store when asked (blocking: run in a thread)."""
    record = _read_upload(upload)
    models = _models(db, names)
    cell = Cell(
        0,
        np.asarray(record.lattice, dtype=np.float64),
        np.asarray(record.frac_coords, dtype=np.float64),
        np.asarray(record.atomic_numbers, dtype=np.int64),
    )
    values = []
    for model in models:
        try:
            values.append(predict_cell(db, settings, model.id, cell))
        except ModelError as exc:
            raise ApiError(f"models: {exc}") from None
    structure_id = _store(db, record, models, values, who) if store else None
    return _Outcome(record, models, values, structure_id)


def _store(
    db: Database, record: StructureRecord, models: list[Any], values: list[float], who: str
) -> int:
    """Ingest the upload (idempotent on its fingerprint) and write its predictions."""
    parameters = {"source": "predictBandGap", "token": who, "models": [m.name for m in models]}
    with track_run(db, "upload", parameters) as run:
        with db.session() as session:
            batch = IngestBatch(run_id=run.id)
            session.add(batch)
            session.flush()
            batch_id = batch.id
        write_chunk(db, batch_id, [record], labels=None, files=1)
        with db.session() as session:
            structure_id = session.scalar(
                select(Structure.id).where(Structure.fingerprint == record.fingerprint)
            )
        assert structure_id is not None
        for model, value in zip(models, values, strict=True):
            write_predictions(db, model.id, run.id, [structure_id], np.array([value]))
    return int(structure_id)


@strawberry.type
class Mutation:
    """Changes and costly work: each needs an API token (`crystaldb token create NAME`)."""

    @strawberry.mutation(
        permission_classes=[RequiresToken],
        description=(
            "Predict the band gap of a structure with trained models (default: the newest KRR"
            " model), given as `cif` (the CIF's text) or `file` (a multipart upload of a CIF,"
            " extended XYZ, POSCAR or JSON file). The structure is stored, with its"
            " predictions and their run, only if `store`."
        ),
    )
    async def predict_band_gap(
        self,
        info: Info,
        cif: str | None = None,
        file: Upload | None = None,
        models: list[str] | None = None,
        store: bool = False,
    ) -> BandGapPrediction:
        """Parse and check as ingest does, predict in a worker thread, store on request."""
        token = await authenticate(info.context)
        context = info.context
        if context.settings is None:
            raise ApiError("this server has no artifact store configured for models")
        upload = await _received(cif, file)
        outcome = await asyncio.to_thread(
            _predict, context.db, context.settings, upload, models, store, token.name or ""
        )
        values = np.array(outcome.values)
        spread = ensemble_spread(values)
        record = outcome.record
        return BandGapPrediction(
            reduced_formula=record.reduced_formula,
            nsites=record.nsites,
            spacegroup_symbol=record.spacegroup_symbol,
            spacegroup_number=record.spacegroup_number,
            predictions=[
                ModelPrediction(value=v, unit="eV", model=ModelType(row=m))
                for m, v in zip(outcome.models, outcome.values, strict=True)
            ],
            mean=float(values.mean()),
            spread=None if spread is None else float(spread),
            structure_id=None
            if outcome.structure_id is None
            else strawberry.ID(str(outcome.structure_id)),
        )
