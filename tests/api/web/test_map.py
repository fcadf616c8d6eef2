"""The kernel map over plain HTTP: the page loads chemiscope from the server, and its dataset
holds one point per kernel row with the stored coordinates, band gaps, both KRR models'
predictions, their spread and their errors on the test split, checked against the database."""

from __future__ import annotations

import math
import re
from typing import Any

import chemiscope
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.jobs.predict import predict
from crystaldb.query.selection import select_structures
from crystaldb.schema import KernelEmbedding, KernelMatrix, Label, Model, Prediction, Structure
from crystaldb.schema.releases import ReleaseMember
from tests.api.web.conftest import KrrSite


@pytest.fixture(scope="module")
def predicted(krr_site: KrrSite) -> dict[str, dict[int, float]]:
    """Both KRR models' predictions for the release, by the real predict job: model -> gaps."""
    selection = select_structures(krr_site.db, release="jarvis")
    with krr_site.db.session() as session:
        models = {m.name: m.id for m in session.scalars(select(Model))}
        done = set(session.scalars(select(Prediction.model_id).distinct()))
    for name in krr_site.models:
        if models[name] not in done:
            predict(krr_site.db, krr_site.settings, models[name], selection, workers=1)
    with krr_site.db.session() as session:
        return {
            name: dict(
                session.execute(
                    select(Prediction.structure_id, Prediction.value)
                    .where(Prediction.model_id == models[name])
                    .order_by(Prediction.id)
                ).all()
            )
            for name in krr_site.models
        }


def _dataset(site: KrrSite, embedding_id: int) -> dict[str, Any]:
    answer = httpx.get(f"{site.url}/map/{embedding_id}.json", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return answer.json()


def _values(dataset: dict[str, Any], name: str) -> list[float]:
    """A property's values with NaN for the nulls the server sends."""
    return [math.nan if v is None else v for v in dataset["properties"][name]["values"]]


@pytest.mark.slow  # two predict jobs, each on a Dask cluster of its own
def test_the_dataset_has_one_point_per_kernel_row(
    krr_site: KrrSite, krr_map: int, predicted: dict[str, dict[int, float]]
) -> None:
    dataset = _dataset(krr_site, krr_map)
    with krr_site.db.session() as session:
        rows = session.get_one(KernelMatrix, krr_site.kernel_id).row_ids
        embedding = session.get_one(KernelEmbedding, krr_map)
        points, xs, ys = embedding.structure_ids, embedding.x, embedding.y
        sizes = dict(session.execute(select(Structure.id, Structure.nsites)).all())
        labels = dict(session.execute(select(Label.structure_id, Label.value)).all())
    assert len(dataset["structures"]) == len(rows) == 50
    assert [s["data"] for s in dataset["structures"]] == rows == points
    assert [s["size"] for s in dataset["structures"]] == [sizes[r] for r in rows]
    properties = dataset["properties"]
    assert properties["structure id"]["values"] == [float(r) for r in rows]
    assert properties["kernel PCA[1]"]["values"] == xs
    assert properties["kernel PCA[2]"]["values"] == ys
    assert _values(dataset, "band gap: OptB88vdW") == [labels[r] for r in rows]
    sharp, smooth = (predicted[name] for name in krr_site.models)
    for name in krr_site.models:
        assert _values(dataset, f"prediction: {name}") == [predicted[name][r] for r in rows]
    spread = [float(np.std([sharp[r], smooth[r]])) for r in rows]
    np.testing.assert_allclose(_values(dataset, "ensemble spread"), spread, rtol=1e-12)
    assert properties["ensemble spread"]["units"] == "eV"
    with krr_site.db.session() as session:
        test_ids = set(
            session.scalars(select(ReleaseMember.structure_id).where(ReleaseMember.split == "test"))
        )
    assert len(test_ids) == 10
    for name in krr_site.models:
        errors = _values(dataset, f"test error: {name}")
        expected = [predicted[name][r] - labels[r] if r in test_ids else math.nan for r in rows]
        np.testing.assert_allclose(errors, expected, rtol=1e-12)  # NaN where NaN
    assert dataset["settings"]["map"]["color"] == {"property": "band gap: OptB88vdW"}
    assert dataset["settings"]["map"]["x"] == {"property": "kernel PCA[1]"}
    assert dataset["settings"]["structure"][0]["unitCell"] is True
    assert f"embedding {krr_map}" in dataset["meta"]["description"]


def test_chemiscope_accepts_the_dataset_it_was_built_by(krr_site: KrrSite, krr_map: int) -> None:
    dataset = _dataset(krr_site, krr_map)
    again = chemiscope.create_input(
        structures=dataset["structures"],
        metadata=dataset["meta"],
        properties={
            k: {**v, "values": _values(dataset, k)} for k, v in dataset["properties"].items()
        },
        settings=dataset["settings"],
    )
    assert list(again["properties"]) == list(dataset["properties"])


def test_a_structure_comes_with_its_cell(krr_site: KrrSite) -> None:
    with krr_site.db.session() as session:
        row = session.scalars(select(Structure).order_by(Structure.nsites.desc())).first()
        assert row is not None
        sid, lattice, frac, numbers = row.id, row.lattice, row.frac_coords, row.atomic_numbers
    answer = httpx.get(f"{krr_site.url}/map/structures/{sid}.json", timeout=30)
    assert answer.status_code == 200
    cell = answer.json()
    assert cell["size"] == len(numbers) == len(cell["names"])
    assert cell["cell"] == np.asarray(lattice).reshape(9).tolist()
    xyz = np.column_stack([cell["x"], cell["y"], cell["z"]])
    np.testing.assert_allclose(xyz, np.asarray(frac) @ np.asarray(lattice), atol=1e-12)
    missing = httpx.get(f"{krr_site.url}/map/structures/{10**12}.json", timeout=30)
    assert missing.status_code == 404 and "no structure" in missing.json()["error"]


def test_the_page_loads_chemiscope_from_the_server(krr_site: KrrSite, krr_map: int) -> None:
    page = httpx.get(f"{krr_site.url}/map", params={"embedding": krr_map}, timeout=30)
    assert page.status_code == 200, page.text
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["/static/chemiscope/chemiscope.min.js", "/static/kernel_map.js"]
    assert f'data-dataset="/map/{krr_map}.json"' in page.text
    for script in scripts:
        served = httpx.get(krr_site.url + script, timeout=30)
        assert served.status_code == 200 and served.content
    assert "cdn" not in page.text.lower() and "unpkg" not in page.text.lower()


def test_the_map_index_lists_embeddings(krr_site: KrrSite, krr_map: int) -> None:
    page = httpx.get(f"{krr_site.url}/map", timeout=30)
    assert page.status_code == 200
    assert f'href="/map?embedding={krr_map}"' in page.text


def test_bad_and_unknown_embeddings_are_sentences(krr_site: KrrSite) -> None:
    bad = httpx.get(f"{krr_site.url}/map", params={"embedding": "x1"}, timeout=30)
    assert bad.status_code == 400 and "whole number" in bad.text
    unknown = httpx.get(f"{krr_site.url}/map", params={"embedding": 10**9}, timeout=30)
    assert unknown.status_code == 404 and "crystaldb kernel embed" in unknown.text
    data = httpx.get(f"{krr_site.url}/map/{10**9}.json", timeout=30)
    assert data.status_code == 404 and "crystaldb kernel embed" in data.json()["error"]
