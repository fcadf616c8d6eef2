"""Trained models and their predictions, kept apart from DFT labels, with full provenance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Identity, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column


class Model(Base):
    """A trained model: what it is, what it learned from, how well it does, and its weights."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    architecture: Mapped[str] = mapped_column(Text)  # krr, schnet, cgcnn, mpnn, ensemble
    property: Mapped[str] = mapped_column(Text, server_default="band_gap")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    release_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("releases.id"))
    split: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    graph_recipe_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("graph_recipes.id"))
    kernel_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("kernel_matrices.id"))
    metrics: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    weights_uri: Mapped[str | None] = mapped_column(Text)
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    library_versions: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    device: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    created_at: Mapped[datetime] = created_at_column()


class Prediction(Base):
    """A model's estimate for one structure, written by one run."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    structure_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("structures.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("models.id"))
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    property: Mapped[str] = mapped_column(Text, server_default="band_gap")
    value: Mapped[float] = mapped_column(Double)
    uncertainty: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        Index("ix_predictions_model_id_property_value", "model_id", "property", "value"),
    )
