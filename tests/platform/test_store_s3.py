"""The artifact store on an S3-compatible object store: a real moto server, reached by s3fs.

Endpoint and keys come from the standard AWS variables, as on a real deployment; the kernel
and the KRR model are built on real Dask workers that reach the bucket by themselves.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from crystaldb.core.errors import ArtifactUnavailable, ConfigError
from crystaldb.core.kernels import average_kernel
from crystaldb.core.soap import SoapHypers, average_spectra
from crystaldb.jobs.kernels import build_kernel
from crystaldb.jobs.krr import load_krr, train_krr
from crystaldb.platform.store import (
    ArtifactStore,
    describe_store,
    open_array_uri,
    read_uri,
    uri_exists,
)
from crystaldb.query.selection import load_cells, select_structures
from crystaldb.schema import DescriptorSet, KernelMatrix, Model
from tests.conftest import DatabaseFactory, load_jarvis

# Hyperparameters no other test uses, so the descriptors are computed (and stored) here.
TINY = SoapHypers(cutoff=3.5, n_max=3, l_max=2)
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on a free port of 127.0.0.1."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the AWS variables pointing every process (workers too) at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    name = f"crystaldb-{uuid.uuid4().hex[:8]}"
    _client(s3_endpoint).mkdir(name)
    return name


def _client(endpoint: str) -> s3fs.S3FileSystem:
    """An S3 client of the test's own, to look into the bucket behind crystaldb's back."""
    return s3fs.S3FileSystem(
        endpoint_url=endpoint, key="testing", secret="testing", skip_instance_cache=True
    )


def test_arrays_and_weights_round_trip_through_the_bucket(
    bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in a local folder named like the URL
    store = ArtifactStore(f"s3://{bucket}/artifacts")
    assert not store.is_local and store.root_uri == f"s3://{bucket}/artifacts"
    array = store.create_array("kernels/1/matrix", shape=(5, 7), chunks=(2, 3))
    values = np.arange(35, dtype="float64").reshape(5, 7)
    array[0:4, 0:3] = values[0:4, 0:3]
    data = b"weights" * 1000
    assert store.put_bytes("models/m.npz", data) == hashlib.sha256(data).hexdigest()

    uri = store.uri("kernels/1/matrix")
    assert uri == f"s3://{bucket}/artifacts/kernels/1/matrix"
    reopened = open_array_uri(uri, "kernel 1")
    np.testing.assert_array_equal(reopened[0:4, 0:3], values[0:4, 0:3])
    assert np.isnan(reopened[4, 6])  # unwritten tiles stay NaN
    assert read_uri(store.uri("models/m.npz"), "model 1") == data
    assert store.get_bytes("models/m.npz") == data
    assert uri_exists(uri) and not uri_exists(store.uri("kernels/2/matrix"))

    keys = _client(s3_endpoint).find(f"{bucket}/artifacts")
    assert f"{bucket}/artifacts/kernels/1/matrix/zarr.json" in keys
    assert f"{bucket}/artifacts/models/m.npz" in keys
    assert sum(1 for k in keys if "/matrix/c/" in k) == 2  # the two chunks written, no more
    assert list(tmp_path.iterdir()) == []
    assert describe_store(store.root_uri) == {
        "url": store.root_uri,
        "local": False,
        "entries": 2,
        "reachable": True,
    }
    store.remove("models/m.npz")
    assert not store.exists("models/m.npz")


@pytest.mark.slow
def test_a_kernel_and_a_krr_model_live_in_the_bucket(
    databases: DatabaseFactory,
    tmp_path: Path,
    bucket: str,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a database of its own: the session's JARVIS database may already hold this kernel
    jarvis = load_jarvis(databases, "crystaldb_s3", tmp_path / "data")
    url = f"s3://{bucket}/run"
    monkeypatch.setenv("CRYSTALDB_STORE_URL", url)
    settings = jarvis.settings.model_copy(update={"store_url": url})
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    kernel = build_kernel(jarvis.db, settings, ids, hypers=TINY, tile=32, workers=2)
    assert kernel.array_uri == f"{url}/kernels/{kernel.kernel_id}/matrix"
    assert kernel.tiles_computed == kernel.tiles_total == 3  # 2 x 2 tiles, upper half

    matrix = open_array_uri(kernel.array_uri, "kernel")[:]
    spectra = average_spectra(load_cells(jarvis.db, ids), TINY)
    np.testing.assert_allclose(matrix, average_kernel(spectra, spectra), atol=1e-12)
    summary = train_krr(jarvis.db, settings, kernel.kernel_id, jarvis.release, folds=3)
    model, weights = load_krr(jarvis.db, settings, summary.model_id)  # read back, sha256 checked
    assert len(weights.train_ids) == jarvis.n_train

    with jarvis.db.session() as session:
        descriptors = session.get_one(DescriptorSet, kernel.descriptor_set_id)
        row = session.get_one(KernelMatrix, kernel.kernel_id)
        stored = session.get_one(Model, summary.model_id)
        uris = [descriptors.array_uri, row.array_uri, stored.weights_uri]
        set_id = descriptors.id
        assert row.status == "complete" and row.checksum == kernel.checksum
    assert all(u is not None and u.startswith(f"{url}/") for u in uris)
    keys = _client(s3_endpoint).find(f"{bucket}/run")
    assert f"{bucket}/run/models/{model.name}.npz" in keys
    assert any(k.startswith(f"{bucket}/run/descriptors/{set_id}/values/") for k in keys)
    assert sum(1 for k in keys if f"/kernels/{kernel.kernel_id}/matrix/c/" in k) == 4
    assert not (settings.data_dir / "store").exists()  # nothing went to a local store


def test_a_missing_bucket_is_named_before_anything_is_written(
    bucket: str, s3_endpoint: str
) -> None:
    url = "s3://no-such-bucket-here/prefix"
    with pytest.raises(ConfigError, match=f"^CRYSTALDB_STORE_URL={re.escape(url)}: bucket "):
        ArtifactStore(url)
    assert "no-such-bucket-here" not in _client(s3_endpoint).ls("")  # not made on the way
    with pytest.raises(ArtifactUnavailable, match=r"^kernel 9: cannot read s3://no-such-bucket"):
        open_array_uri(f"{url}/kernels/9/matrix", "kernel 9")
    assert describe_store(url)["reachable"] is False


def test_an_unreachable_endpoint_is_named_with_the_url(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CRYSTALDB_STORE_OPTIONS reach s3fs: here an endpoint where nothing listens, no retries."""
    url = f"s3://{bucket}/prefix"
    monkeypatch.setenv("CRYSTALDB_STORE_URL", url)
    monkeypatch.setenv(
        "CRYSTALDB_STORE_OPTIONS",
        '{"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}}',
    )
    message = f"^CRYSTALDB_STORE_URL={re.escape(url)}: cannot reach the object store at "
    message += re.escape("http://127.0.0.1:9 ")
    with pytest.raises(ArtifactUnavailable, match=message):
        ArtifactStore(url)
    with pytest.raises(ArtifactUnavailable, match=f"^model 3: cannot read {re.escape(url)}/m.npz"):
        read_uri(f"{url}/m.npz", "model 3")
    assert describe_store(url)["reachable"] is False
