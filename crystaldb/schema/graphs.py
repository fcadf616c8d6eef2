"""Quotient graphs: periodic multigraphs of a cell, with the image offset of every edge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Integer,
    SmallInteger,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from crystaldb.schema.base import Base, created_at_column

GRAPH_METHODS = ("radius", "knn", "voronoi")


class GraphRecipe(Base):
    """How edges are chosen: method, its parameters, and the library that computed them."""

    __tablename__ = "graph_recipes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)  # e.g. radius:5.0
    method: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    library: Mapped[str] = mapped_column(Text)
    library_version: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint(
            "method IN (" + ", ".join(f"'{m}'" for m in GRAPH_METHODS) + ")", name="method"
        ),
    )


class QuotientGraph(Base):
    """Edges of one structure under one recipe, stored as compact arrays, not a row per edge."""

    __tablename__ = "quotient_graphs"

    structure_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("structures.id", ondelete="CASCADE"), primary_key=True
    )
    recipe_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("graph_recipes.id"), primary_key=True, index=True
    )
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.id"), index=True)
    num_nodes: Mapped[int] = mapped_column(Integer)
    num_edges: Mapped[int] = mapped_column(Integer)
    # Edge e joins site edge_src[e] in cell (0,0,0) to site edge_dst[e] in the cell
    # translated by edge_images[3e:3e+3] lattice vectors.
    edge_src: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    edge_dst: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    edge_images: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    edge_lengths: Mapped[list[float]] = mapped_column(ARRAY(REAL))  # angstrom
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint(
            "cardinality(edge_src) = num_edges AND cardinality(edge_dst) = num_edges"
            " AND cardinality(edge_images) = 3 * num_edges"
            " AND cardinality(edge_lengths) = num_edges",
            name="edge_arrays",
        ),
    )
