"""A release's figures and manifest summary for the web pages, kept in the artifact store.

The figures are release/plots.py's, the summary release/manifest.py's (less the member ids
and the export format), both made from `load_release` exactly as `crystaldb release export`
makes them. A release never changes, so they are drawn once, on the first view, and put in
the artifact store under a key naming the release's id and creation time (a release of the
same name in another database sharing the store gets its own); later views read the store.
A model's learning curve is the PNG its training put beside its weights.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crystaldb.platform.database import Database
from crystaldb.platform.store import ArtifactStore, read_uri, uri_exists
from crystaldb.release import manifest, plots
from crystaldb.release.load import load_release
from crystaldb.schema import Model, Release

INDEX = "index.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ReleaseFigures:
    """The figure files a release has (in drawing order) and its manifest summary."""

    plots: list[str]
    summary: dict[str, Any]


def find_release(db: Database, name: str, version: str) -> Release | None:
    """The release called name:version, None if there is none."""
    with db.session() as session:
        statement = select(Release).where(Release.name == name, Release.version == version)
        release = session.scalars(statement).one_or_none()
        if release is not None:
            session.expunge(release)
        return release


def folder(release: Release) -> str:
    """The store folder of a release's figures: unique per release row, readable by a person."""
    stamp = release.created_at.strftime("%Y%m%dT%H%M%S%f")
    name, version = _UNSAFE.sub("_", release.name), _UNSAFE.sub("_", release.version)
    return f"web/releases/{name}/{version}/{release.id}-{stamp}"


def release_figures(db: Database, store: ArtifactStore, release: Release) -> ReleaseFigures:
    """The release's figures and summary, drawn and stored on first use."""
    index = f"{folder(release)}/{INDEX}"
    if store.exists(index):
        stored = json.loads(store.get_bytes(index))
        return ReleaseFigures(stored["plots"], stored["summary"])
    data = load_release(db, release)
    with tempfile.TemporaryDirectory(prefix="crystaldb-release-plots-") as scratch:
        drawn = plots.write_plots(data, Path(scratch))
        summary = manifest.build_manifest(data, "web", Path(scratch))
        for path in drawn:
            store.put_bytes(f"{folder(release)}/{path.name}", path.read_bytes())
    for key in ("splits", "format"):  # every member id; no export format here
        summary.pop(key, None)
    figures = ReleaseFigures([p.name for p in drawn], summary)
    document = {"plots": figures.plots, "summary": figures.summary}
    store.put_bytes(index, json.dumps(document, sort_keys=True).encode())  # last: complete
    return figures


def learning_curve(db: Database, name: str) -> bytes | None:
    """A model's learning-curve PNG, beside its recorded weights; None if it has none."""
    with db.session() as session:
        weights = session.scalar(select(Model.weights_uri).where(Model.name == name))
    if not weights:
        return None
    uri = f"{weights.rsplit('.', 1)[0]}-learning-curve.png"  # Keys.learning_curve's sibling
    if not uri_exists(uri):
        return None
    return read_uri(uri, f"the learning curve of model {name}")
