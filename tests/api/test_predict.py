"""predictBandGap over real HTTP: a real CIF, a KRR model trained on real JARVIS gaps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from crystaldb.api.app import create_app
from crystaldb.core.cell import Cell
from crystaldb.core.krr_model import predict_cells
from crystaldb.core.records import StructureRecord
from crystaldb.core.soap import SoapHypers
from crystaldb.formats.payload import process_file
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import load_krr, train_krr
from crystaldb.query.selection import select_structures
from crystaldb.schema import Prediction, Structure
from crystaldb.schema.tokens import create_token
from tests.api.conftest import serving
from tests.jarvis import LabelledDatabase
from tests.realdata import SAMPLE

CIF = SAMPLE / "cod" / "1000039.cif"  # Ca3Al2O6
MUTATION = """
mutation($cif: String!, $store: Boolean!) {
  predictBandGap(cif: $cif, store: $store) {
    reducedFormula nsites spacegroupNumber mean spread structureId
    predictions { value unit model { name architecture } }
  }
}"""


@pytest.fixture(scope="module")
def served(jarvis: LabelledDatabase) -> Iterator[tuple[str, str, int]]:
    """A KRR model on the JARVIS release, a live token, and the app serving them."""
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    hypers = SoapHypers(n_max=4, l_max=3)
    kernel = build_kernel(jarvis.db, jarvis.settings, ids, hypers=hypers, workers=1)
    model = train_krr(
        jarvis.db, jarvis.settings, kernel.kernel_id, jarvis.release, folds=5, name="krr-api"
    )
    token = create_token(jarvis.db, "api-test")
    with serving(create_app(jarvis.db, jarvis.settings)) as url:
        yield url, token, model.model_id


def _post(url: str, token: str | None, cif: str, store: bool = False) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{url}/graphql",
        json={"query": MUTATION, "variables": {"cif": cif, "store": store}},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_prediction_is_the_models_own(jarvis: LabelledDatabase, served) -> None:
    url, token, model_id = served
    body = _post(url, token, CIF.read_text())
    assert "errors" not in body, body
    result = body["data"]["predictBandGap"]
    record = next(r for r in process_file(CIF) if isinstance(r, StructureRecord))
    cell = Cell(0, np.asarray(record.lattice), np.asarray(record.frac_coords),
                np.asarray(record.atomic_numbers))  # fmt: skip
    _, weights = load_krr(jarvis.db, jarvis.settings, model_id)
    expected = float(predict_cells([cell], weights)[0])
    assert result["predictions"] == [
        {
            "value": pytest.approx(expected),
            "unit": "eV",
            "model": {"name": "krr-api", "architecture": "krr"},
        }
    ]
    assert result["mean"] == pytest.approx(expected) and result["spread"] is None
    assert (result["reducedFormula"], result["nsites"]) == (record.reduced_formula, record.nsites)
    assert result["structureId"] is None
    with jarvis.db.session() as session:  # nothing stored without `store`
        known = select(Structure.id).where(Structure.fingerprint == record.fingerprint)
        assert session.scalar(known) is None


def test_store_keeps_structure_and_prediction(jarvis: LabelledDatabase, served) -> None:
    url, token, model_id = served
    first = _post(url, token, CIF.read_text(), store=True)["data"]["predictBandGap"]
    again = _post(url, token, CIF.read_text(), store=True)["data"]["predictBandGap"]
    assert first["structureId"] is not None and again["structureId"] == first["structureId"]
    with jarvis.db.session() as session:
        stored = session.scalars(
            select(Prediction.value).where(
                Prediction.structure_id == int(first["structureId"]),
                Prediction.model_id == model_id,
            )
        ).all()
    assert stored == [pytest.approx(first["mean"])] * 2


def test_refusals_are_clear(served) -> None:
    url, token, _ = served
    unauthenticated = _post(url, None, CIF.read_text())
    assert unauthenticated["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "crystaldb token create" in unauthenticated["errors"][0]["message"]
    broken = _post(url, token, (SAMPLE / "malformed").glob("*.cif").__next__().read_text())
    assert broken["data"] is None
    assert broken["errors"][0]["message"].startswith("cif: cannot be used")
    empty = _post(url, token, "")
    assert empty["errors"][0]["message"].startswith("cif: cannot be used")


TWO_MODELS = """
mutation($cif: String!, $models: [String!]!) {
  predictBandGap(cif: $cif, models: $models) { mean spread predictions { value } }
}"""


def test_spread_is_the_population_std_that_predict_ensemble_stores(
    jarvis: LabelledDatabase,
    served,
) -> None:
    """Two models, two values a and b: spread is |a - b| / 2, the ensembles' uncertainty."""
    from crystaldb.schema import KernelMatrix

    url, token, _ = served
    with jarvis.db.session() as session:
        kernel_id = session.scalar(select(KernelMatrix.id).order_by(KernelMatrix.id.desc()))
    assert kernel_id is not None
    name = "krr-api-stiff"  # another regularisation, so another prediction
    train_krr(jarvis.db, jarvis.settings, kernel_id, jarvis.release, (1.0,), 5, name=name)
    response = httpx.post(
        f"{url}/graphql",
        json={
            "query": TWO_MODELS,
            "variables": {"cif": CIF.read_text(), "models": ["krr-api", name]},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    result = response["data"]["predictBandGap"]
    a, b = (p["value"] for p in result["predictions"])
    assert abs(a - b) > 1e-6
    assert result["mean"] == pytest.approx((a + b) / 2)
    assert result["spread"] == pytest.approx(abs(a - b) / 2)
    assert result["spread"] == pytest.approx(float(np.std([a, b])))


SIMILAR = """
query($id: ID!, $k: Int!) {
  similar(id: $id, k: $k) { kernel distance structure { id reducedFormula } }
}"""


def test_similar_reads_the_stored_kernel(jarvis: LabelledDatabase, served) -> None:
    from crystaldb.platform.store import ArtifactStore
    from crystaldb.schema import KernelMatrix

    url, _, _ = served
    with jarvis.db.session() as session:
        kernel = session.scalars(select(KernelMatrix).order_by(KernelMatrix.id.desc())).first()
        assert kernel is not None
        ids, kernel_id = list(kernel.row_ids), kernel.id
    matrix = ArtifactStore(jarvis.settings.store_location).open_array(f"kernels/{kernel_id}/matrix")
    full = np.asarray(matrix[:])
    target = ids[3]
    d2 = np.maximum(np.diag(full)[3] + np.diag(full) - 2 * full[3], 0.0)
    d2[3] = np.inf
    nearest = np.argsort(d2, kind="stable")[:4]
    response = httpx.post(
        f"{url}/graphql", json={"query": SIMILAR, "variables": {"id": str(target), "k": 4}}
    ).json()
    found = response["data"]["similar"]
    assert [int(n["structure"]["id"]) for n in found] == [ids[i] for i in nearest]
    assert [n["kernel"] for n in found] == pytest.approx(full[3, nearest].tolist(), abs=1e-12)
    distances = [n["distance"] for n in found]
    assert distances == sorted(distances)
    assert distances == pytest.approx(np.sqrt(d2[nearest]).tolist(), abs=1e-12)
    missing = httpx.post(
        f"{url}/graphql", json={"query": SIMILAR, "variables": {"id": "987654", "k": 4}}
    ).json()
    assert "build one over it with `crystaldb kernel build`" in missing["errors"][0]["message"]


def _upload(url: str, token: str, name: str, data: bytes) -> dict[str, Any]:
    """A GraphQL multipart request (the spec's operations, map and file parts)."""
    operations = {
        "query": "mutation($file: Upload!) { predictBandGap(file: $file) {"
        " reducedFormula nsites mean } }",
        "variables": {"file": None},
    }
    response = httpx.post(
        f"{url}/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_file_upload_predicts_as_the_text_does(served) -> None:
    url, token, _ = served
    as_text = _post(url, token, CIF.read_text())["data"]["predictBandGap"]
    as_file = _upload(url, token, CIF.name, CIF.read_bytes())["data"]["predictBandGap"]
    assert as_file["mean"] == pytest.approx(as_text["mean"])
    assert (as_file["reducedFormula"], as_file["nsites"]) == (
        as_text["reducedFormula"],
        as_text["nsites"],
    )
    poscar = next((SAMPLE / "jarvis").glob("*POSCAR*"))
    by_name = _upload(url, token, poscar.name, poscar.read_bytes())  # its name picks the reader
    assert "errors" not in by_name, by_name
    (record,) = [r for r in process_file(poscar) if isinstance(r, StructureRecord)]
    read = by_name["data"]["predictBandGap"]
    assert (read["reducedFormula"], read["nsites"]) == (record.reduced_formula, record.nsites)
    binary = _upload(url, token, "junk.cif", b"\x00\x01\x02 not a crystal")
    assert binary["errors"][0]["message"].startswith("file: cannot be used")
    neither = httpx.post(
        f"{url}/graphql",
        json={"query": "mutation { predictBandGap { mean } }"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    assert neither["errors"][0]["message"].startswith("give the structure either as `cif`")
