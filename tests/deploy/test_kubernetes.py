"""deploy/kubernetes: every manifest is valid for the Kubernetes API it is sent to.

Built-in kinds are checked strictly (no unknown field) by kubernetes-validate against the
Kubernetes schemas it ships; DaskCluster and DaskWorkerGroup against the Dask Kubernetes
operator's own CRD schemas (tests/data/deploy, copied from the dask-kubernetes wheel), with
unknown fields refused as the API server's pruning would drop them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from crystaldb.platform.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
CRDS = ROOT / "tests" / "data" / "deploy"
KUBERNETES = "1.33.0"
CUSTOM = {"DaskCluster": "daskcluster-crd.yaml", "DaskWorkerGroup": "daskworkergroup-crd.yaml"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


DOCUMENTS = _documents()


def _crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / CUSTOM[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    return dict(version["schema"]["openAPIV3Schema"])


def _unknown_fields(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields a structural schema does not declare (the API server would drop them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        found = []
        for key, item in value.items():
            if properties is not None and key in properties:
                found += _unknown_fields(item, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += _unknown_fields(item, extra, f"{where}.{key}")
            elif properties is not None or extra is False:
                found.append(f"{where}.{key}")
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            f
            for i, item in enumerate(value)
            for f in _unknown_fields(item, schema["items"], f"{where}[{i}]")
        ]
    return []


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    if doc["kind"] in CUSTOM:
        schema = _crd_schema(doc["kind"])
        jsonschema.Draft7Validator(schema).validate(doc)
        spec_only = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        assert _unknown_fields(spec_only, schema, doc["kind"]) == []
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_strict_validation_catches_what_it_should() -> None:
    """The checks refuse a misspelt field, in a built-in kind and in a DaskCluster."""
    deployment = next(d for n, d in DOCUMENTS if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    cluster = next(d for n, d in DOCUMENTS if d["kind"] == "DaskCluster")
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["worker"]["replica"] = 3
    schema = _crd_schema("DaskCluster")
    spec_only = {"spec": broken["spec"]}
    assert _unknown_fields(spec_only, schema, "DaskCluster") == ["DaskCluster.spec.worker.replica"]
    del broken["spec"]["scheduler"]
    with pytest.raises(jsonschema.ValidationError, match="'scheduler' is a required property"):
        jsonschema.Draft7Validator(schema).validate(broken)


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [
        d for _, d in DOCUMENTS if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    return doc


def test_the_pieces_fit_together() -> None:
    settings = {**_one("ConfigMap")["data"], **_one("Secret")["stringData"]}
    crystaldb = {
        k.removeprefix(ENV_PREFIX).lower(): v
        for k, v in settings.items()
        if k.startswith(ENV_PREFIX)
    }
    assert set(crystaldb) <= set(Settings.model_fields), "a CRYSTALDB_* name that is no setting"
    loaded = load_settings(**crystaldb)  # every value is one the settings accept
    cluster = _one("DaskCluster")
    service = f"{cluster['metadata']['name']}-scheduler.{cluster['metadata']['namespace']}"
    assert loaded.dask_scheduler == f"tcp://{service}.svc.cluster.local:8786"
    assert loaded.store_location.startswith("s3://")
    postgres = _one("Service", "postgres")
    assert (
        f"@postgres.{postgres['metadata']['namespace']}.svc" in settings["CRYSTALDB_DATABASE_URL"]
    )

    gpu = _one("DaskWorkerGroup")
    assert gpu["spec"]["cluster"] == cluster["metadata"]["name"]
    container = gpu["spec"]["worker"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--resources") + 1] == "GPU=1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--resources" not in cluster["spec"]["worker"]["spec"]["containers"][0]["args"]

    api = _one("Deployment", "crystaldb-api")
    command = api["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["crystaldb", "serve"] and "--workers" in command
    selector = _one("Service", "crystaldb-api")["spec"]["selector"]
    assert selector.items() <= api["spec"]["template"]["metadata"]["labels"].items()
    names = {(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS}
    for _, doc in DOCUMENTS:
        for source in _env_sources(doc):
            assert source in names, source
    assert {d["metadata"].get("namespace") for _, d in DOCUMENTS if d["kind"] != "Namespace"} == {
        _one("Namespace")["metadata"]["name"]
    }


def _env_sources(doc: Any) -> list[tuple[str, str]]:
    """Every ConfigMap and Secret a manifest's containers read their environment from."""
    found: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "configMapRef":
                found.append(("ConfigMap", value["name"]))
            elif key in ("secretRef", "secretKeyRef"):
                found.append(("Secret", value["name"]))
            else:
                found += _env_sources(value)
    elif isinstance(doc, list):
        for item in doc:
            found += _env_sources(item)
    return found
