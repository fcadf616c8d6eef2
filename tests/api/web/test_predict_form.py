"""The prediction form over plain HTTP: the numbers are predictBandGap's, and a bad token, a
bad file or no model is a sentence on the page (never a 500)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import Api
from tests.api.web.conftest import KrrSite
from tests.realdata import SAMPLE

CIF = SAMPLE / "cod" / "1000039.cif"  # Ca3Al2O6
MUTATION = """
mutation($cif: String!, $models: [String!]!) {
  predictBandGap(cif: $cif, models: $models) { mean spread predictions { value model { name } } }
}"""


def mutation(site: KrrSite, models: list[str]) -> dict[str, Any]:
    """What the GraphQL mutation answers for the CIF, the oracle of the form."""
    response = httpx.post(
        f"{site.url}/graphql",
        json={"query": MUTATION, "variables": {"cif": CIF.read_text(), "models": models}},
        headers={"Authorization": f"Bearer {site.token}"},
        timeout=60,
    )
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"]["predictBandGap"])


def _post(site: KrrSite, token: str, models: list[str], name: str, data: bytes) -> httpx.Response:
    """The form as the browser posts it once its script has read the chosen file."""
    form = {"token": token, "models": models, "filename": name, "text": data.decode()}
    return httpx.post(f"{site.url}/predict", data=form, timeout=60)


def test_the_form_offers_the_models_that_predict(krr_site: KrrSite) -> None:
    response = httpx.get(f"{krr_site.url}/predict", timeout=30)
    assert response.status_code == 200
    for name in krr_site.models:
        assert f'<option value="{name}"' in response.text
    assert 'type="password" name="token"' in response.text
    assert 'type="file" id="file"' in response.text and 'name="text"' in response.text


def test_the_form_shows_the_mutations_numbers(krr_site: KrrSite) -> None:
    models = list(krr_site.models)
    response = _post(krr_site, krr_site.token, models, CIF.name, CIF.read_bytes())
    assert response.status_code == 200, response.text
    expected = mutation(krr_site, models)
    assert expected["spread"] is not None and expected["spread"] > 0
    for prediction in expected["predictions"]:
        assert f'<td class="value">{prediction["value"]:.4f}</td>' in response.text
    assert f'<strong id="mean">{expected["mean"]:.4f}</strong>' in response.text
    assert f'<strong id="spread">{expected["spread"]:.4f}</strong>' in response.text
    assert "Ca3Al2O6" in response.text


def test_a_bad_token_is_a_message(krr_site: KrrSite) -> None:
    response = _post(krr_site, "not-a-token", [krr_site.models[0]], CIF.name, CIF.read_bytes())
    assert response.status_code == 400
    assert "could not run" in response.text and "token" in response.text
    assert "not-a-token" not in response.text  # a token is never echoed


def test_a_bad_file_is_the_readers_message(krr_site: KrrSite) -> None:
    broken = next((SAMPLE / "malformed").glob("*.cif"))
    response = _post(krr_site, krr_site.token, [krr_site.models[0]], broken.name,
                     broken.read_bytes())  # fmt: skip
    assert response.status_code == 400
    assert "file: cannot be used" in response.text


def test_missing_fields_are_each_a_message(krr_site: KrrSite) -> None:
    response = httpx.post(f"{krr_site.url}/predict", data={}, timeout=30)
    assert response.status_code == 400
    for field in ("token: give an API token", "file: choose a structure file", "models: choose"):
        assert field in response.text


def test_an_unknown_model_is_a_message(krr_site: KrrSite) -> None:
    response = _post(krr_site, krr_site.token, ["no-such-model"], CIF.name, CIF.read_bytes())
    assert response.status_code == 400
    assert "no model named &#39;no-such-model&#39;" in response.text


def test_a_model_that_cannot_predict_is_a_message(api: Api) -> None:
    form = {"token": api.token, "models": ["linear-density"], "text": CIF.read_text()}
    response = api.client.post(f"{api.url}/predict", data=form)
    assert response.status_code == 400
    assert "linear model" in response.text
    assert "No trained model is stored" in response.text  # linear models are not offered
