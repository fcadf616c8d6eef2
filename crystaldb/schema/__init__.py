"""The tables: SQLAlchemy 2.0 typed models and the Alembic migrations that create them.

This package is the only place that defines tables; every other layer imports them from here.
"""

from crystaldb.schema.base import Base
from crystaldb.schema.descriptors import DescriptorSet, KernelMatrix
from crystaldb.schema.embeddings import KernelEmbedding
from crystaldb.schema.graphs import GraphRecipe, QuotientGraph
from crystaldb.schema.label_failures import LabelFailure
from crystaldb.schema.labels import Calculation, Label
from crystaldb.schema.ml import Model, Prediction
from crystaldb.schema.releases import Release, ReleaseMember
from crystaldb.schema.runs import Run
from crystaldb.schema.sources import IngestBatch, IngestReject, Source
from crystaldb.schema.structures import ExternalId, Structure
from crystaldb.schema.tokens import ApiToken

__all__ = [
    "ApiToken",
    "Base",
    "Calculation",
    "DescriptorSet",
    "ExternalId",
    "GraphRecipe",
    "IngestBatch",
    "IngestReject",
    "KernelEmbedding",
    "KernelMatrix",
    "Label",
    "LabelFailure",
    "Model",
    "Prediction",
    "QuotientGraph",
    "Release",
    "ReleaseMember",
    "Run",
    "Source",
    "Structure",
]
