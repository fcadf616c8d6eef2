"""Model rows and their weights files: what KRR, graph-network and ensemble jobs share.

A model is stored in two steps, weights first: the file goes to the artifact store under
`models/NAME.EXT` with its sha256, then the `models` row records its URI. Reading opens that
URI (wherever the store is configured now) and checks the sha256 again, so a model never
predicts with weights other than those it was scored with.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select

from crystaldb.core.errors import CrystaldbError
from crystaldb.core.provenance import software_versions
from crystaldb.platform.database import Database
from crystaldb.platform.store import ArtifactStore, Keys, read_uri
from crystaldb.schema import Model, Release
from crystaldb.schema.releases import ReleaseRef


class ModelError(CrystaldbError):
    """A model that cannot be trained or used as asked."""


def model_row(db: Database, model_id: int) -> Model:
    """The model row, detached, or an error naming the id."""
    with db.session() as session:
        model = session.get(Model, model_id)
        if model is None:
            raise ModelError(f"--model: no model {model_id} (see `crystaldb models`)")
        session.expunge(model)
    return model


def check_name_free(db: Database, name: str) -> None:
    """Model names are unique: refuse before any work is done."""
    with db.session() as session:
        if session.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise ModelError(f"--name: a model called {name!r} exists already")


def store_model(
    db: Database, store: ArtifactStore, name: str, suffix: str, weights: bytes, **columns: Any
) -> tuple[int, str]:
    """Weights to the artifact store (sha256 kept), then the model row; (id, weights URI)."""
    check_name_free(db, name)
    key = Keys.weights(name, suffix)
    sha = store.put_bytes(key, weights)
    with db.session() as session:
        model = Model(
            name=name,
            weights_uri=store.uri(key),
            weights_sha256=sha,
            library_versions=software_versions(),
            **columns,
        )
        session.add(model)
        session.flush()
        return model.id, store.uri(key)


def read_weights(model: Model) -> bytes:
    """A model's weights file from the URI on its row, checked against its sha256."""
    if model.weights_uri is None:
        raise ModelError(f"model {model.id} ({model.name}): no weights file recorded")
    data = read_uri(model.weights_uri, f"model {model.id} ({model.name}) weights")
    if hashlib.sha256(data).hexdigest() != model.weights_sha256:
        raise ModelError(f"model {model.id}: weights file {model.weights_uri} fails its sha256")
    return data


def list_models(db: Database) -> list[tuple[Model, str | None]]:
    """Every model with its release as NAME:VERSION, newest first."""
    with db.session() as session:
        rows = session.execute(
            select(Model, Release.name, Release.version)
            .outerjoin(Release, Release.id == Model.release_id)
            .order_by(Model.id.desc())
        ).all()
        session.expunge_all()
    return [
        (model, str(ReleaseRef(name, version)) if name else None) for model, name, version in rows
    ]
