"""Models, predictions and quotient graphs over HTTP, against the rows the fixture stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.schema import GraphRecipe, Model, QuotientGraph, Run
from tests.api import oracle
from tests.api.conftest import RELEASE, Api
from tests.api.derived import EMPTY_RECIPE, GRAPH_RECIPE, MODELS
from tests.api.test_structures import IDS, selected

MODEL_FIELDS = """
  id name architecture property hyperparameters split metrics weightsUri weightsSha256
  libraries libraryVersions device createdAt
  release { name version members }
  run { id kind status parameters results }
"""


def test_models_with_metrics_release_and_run(api: Api) -> None:
    """models lists every model, newest first, with its provenance as stored."""
    data = api.data(
        f'{{ models {{ {MODEL_FIELDS} }} one: models(name: "linear-density") {{ name }} }}'
    )
    with api.db.session() as session:
        stored = {m.name: m for m in session.execute(select(Model.__table__))}
        runs = {r.id: r for r in session.execute(select(Run.__table__))}
    assert [m["name"] for m in data["models"]] == sorted(
        stored, key=lambda n: (stored[n].created_at, stored[n].id), reverse=True
    )
    assert data["one"] == [{"name": "linear-density"}]
    members = sum(f"{RELEASE[0]}:{RELEASE[1]}" in r.releases for r in api.rows.values())
    for model in data["models"]:
        row = stored[model["name"]]
        assert model["hyperparameters"] == {"features": list(MODELS[row.name]), "clip_min": 0.0}
        assert model["metrics"] == row.metrics
        assert set(model["metrics"]) == {"mae_train", "rmse_train", "mae_test", "rmse_test"}
        assert model["split"] == row.split
        assert model["release"] == {"name": RELEASE[0], "version": RELEASE[1], "members": members}
        run = runs[row.run_id]
        assert model["run"] == {
            "id": str(run.id),
            "kind": "api-test-train",
            "status": "succeeded",
            "parameters": None,  # for operators only (below)
            "results": None,
        }
        assert "numpy" in model["libraries"] and model["libraryVersions"] is None
        assert model["weightsUri"] is None and model["device"] == "cpu"
    operator = {
        m["name"]: m for m in api.operator_data(f"{{ models {{ {MODEL_FIELDS} }} }}")["models"]
    }
    for name, model in operator.items():
        assert model["run"]["parameters"] == {"model": name}  # the inputs as given
        assert model["run"]["results"] == {"model_id": int(model["id"])}  # the outputs, apart
        assert model["libraryVersions"]["numpy"] == np.__version__


def test_structure_predictions_with_model_and_run(api: Api) -> None:
    """A structure's predictions are the stored ones, each with its model and run."""
    query = """
    query($id: ID!) { structure(id: $id) {
      labels { value }
      predictions { property value uncertainty createdAt model { name architecture } run { kind } }
    } }
    """
    both = [r for r in api.rows.values() if len(r.predictions) == 2]
    assert both
    for row in both[:3]:
        node = api.data(query, id=str(row.id))["structure"]
        got: dict[str, list[float]] = {}
        for p in node["predictions"]:
            assert p["property"] == "band_gap"
            assert p["model"]["architecture"] == "linear"
            assert p["run"] == {"kind": "api-test-predict"}
            assert (p["uncertainty"] is None) == (p["model"]["name"] == "linear-density")
            got.setdefault(p["model"]["name"], []).append(p["value"])
        assert got == row.predictions
        assert len(node["labels"]) == sum(len(v) for v in row.gaps.values())  # kept apart


@pytest.mark.parametrize(
    "spec",
    [
        {"bandGap": {"gte": 2.5, "lte": 3.5, "model": "linear-density"}},
        {"bandGap": {"lte": 3.0, "model": "linear-density-nsites"}},
        {"bandGap": {"gte": 3.0, "model": "linear-density"}, "elements": {"hasAll": ["C"]}},
        {
            "or": [
                {"bandGap": {"gte": 3.2, "model": "linear-density"}},
                {"bandGap": {"lte": 1.0}},
            ]
        },
        {"not": {"bandGap": {"lte": 3.0, "model": "linear-density-nsites"}}},
        {
            "bandGap": {"gte": 2.0, "model": "linear-density"},
            "and": [{"bandGap": {"lte": 4.0, "functional": "PBE"}}],
        },
    ],
)
def test_band_gap_on_model_predictions_matches_the_oracle(api: Api, spec: dict[str, Any]) -> None:
    """bandGap with a model bounds that model's predictions, not the labels."""
    expected = oracle.select(api.rows, spec)
    assert expected, f"the test data should make {spec} select something"
    assert expected != oracle.select(api.rows, _without_model(spec))
    assert selected(api, spec) == expected


def _without_model(spec: Any) -> Any:
    """The same filter on the PBE labels."""
    if isinstance(spec, dict):
        return {k: _without_model(v) for k, v in spec.items() if k != "model"}
    if isinstance(spec, list):
        return [_without_model(v) for v in spec]
    return spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"bandGap": {"lte": 1, "model": "nope"}},
            "filter.bandGap.model: no model named 'nope'; models: 'linear-density', "
            "'linear-density-nsites'",
        ),
        (
            {"or": [{"nsites": {"lte": 3}}, {"bandGap": {"lte": 1, "model": "x"}}]},
            "filter.or[1].bandGap.model: no model named 'x'",
        ),
        (
            {"bandGap": {"lte": 1, "model": "linear-density", "functional": "PBE"}},
            "filter.bandGap: give functional (a DFT label) or model (predictions), not both",
        ),
        ({"bandGap": {"model": "linear-density"}}, "filter.bandGap: give gte, lte or both"),
    ],
)
def test_band_gap_model_errors(api: Api, spec: dict[str, Any], expected: str) -> None:
    """An unknown model, or both sources at once, is a clear error."""
    body = api.post(IDS, f=spec)
    assert body["data"] is None
    assert expected in body["errors"][0]["message"]


GRAPH = """
query($id: ID!, $recipe: String!) { structure(id: $id) {
  lattice sites { cartesian }
  quotientGraph(recipe: $recipe) {
    recipe { name method parameters library libraryVersion }
    numNodes numEdges edgeSrc edgeDst edgeImages edgeLengths run { kind status }
  }
} }
"""


def test_quotient_graph_is_the_stored_one_and_its_lengths_hold(api: Api) -> None:
    """The arrays as stored; each length is |r_dst + image . lattice - r_src|."""
    assert api.graph_ids
    with api.db.session() as session:
        stored = {
            g.structure_id: g
            for g in session.execute(
                select(QuotientGraph.__table__)
                .join(GraphRecipe)
                .where(GraphRecipe.name == GRAPH_RECIPE)
            )
        }
    for sid in api.graph_ids:
        node = api.data(GRAPH, id=str(sid), recipe=GRAPH_RECIPE)["structure"]
        graph, row = node["quotientGraph"], stored[sid]
        assert graph["recipe"]["name"] == GRAPH_RECIPE
        assert graph["recipe"]["method"] == "radius"
        assert graph["recipe"]["library"] == "matscipy"
        assert graph["run"] == {"kind": "api-test-graphs", "status": "succeeded"}
        assert graph["numNodes"] == len(node["sites"]) == row.num_nodes
        assert graph["numEdges"] == row.num_edges == len(graph["edgeSrc"]) > 0
        assert graph["edgeSrc"] == row.edge_src and graph["edgeDst"] == row.edge_dst
        assert [x for image in graph["edgeImages"] for x in image] == row.edge_images
        lattice = np.array(node["lattice"])
        positions = np.array([site["cartesian"] for site in node["sites"]])
        vectors = (
            positions[graph["edgeDst"]]
            + np.array(graph["edgeImages"]) @ lattice
            - positions[graph["edgeSrc"]]
        )
        lengths = np.array(graph["edgeLengths"])
        assert np.allclose(np.linalg.norm(vectors, axis=1), lengths, atol=1e-4)
        assert lengths.max() < 3.0


def test_quotient_graph_missing_and_unknown(api: Api) -> None:
    """No graph for this structure or recipe: null; an unknown recipe: an error naming them."""
    other = next(i for i in api.rows if i not in api.graph_ids)
    assert api.data(GRAPH, id=str(other), recipe=GRAPH_RECIPE)["structure"]["quotientGraph"] is None
    graph_id = str(api.graph_ids[0])
    assert api.data(GRAPH, id=graph_id, recipe=EMPTY_RECIPE)["structure"]["quotientGraph"] is None
    body = api.post(GRAPH, id=graph_id, recipe="radius:9.9")
    (error,) = body["errors"]
    assert error["message"] == (
        f"quotientGraph: no graph recipe named 'radius:9.9'; known: '{EMPTY_RECIPE}', "
        f"'{GRAPH_RECIPE}'"
    )
    assert error["path"] == ["structure", "quotientGraph"]
