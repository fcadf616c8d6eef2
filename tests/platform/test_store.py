"""The artifact store: chunked Zarr v3 arrays and blobs, on disk or behind an fsspec URL."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from crystaldb.core.errors import ArtifactUnavailable
from crystaldb.platform.store import ArtifactStore, open_array_uri, read_uri, uri_exists


def test_local_zarr_array_is_v3_and_chunked_on_disk(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    array = store.create_array("kernels/test.zarr", shape=(5, 7), chunks=(2, 3))
    values = np.arange(35, dtype="float64").reshape(5, 7)
    array[0:4, 0:3] = values[0:4, 0:3]  # only some tiles written

    reopened = store.open_array("kernels/test.zarr")
    np.testing.assert_array_equal(reopened[0:4, 0:3], values[0:4, 0:3])
    assert np.isnan(reopened[4, 6])  # unwritten tiles read as NaN, not zeros
    meta = json.loads((tmp_path / "store" / "kernels" / "test.zarr" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [2, 3]
    assert store.uri("kernels/test.zarr") == str(tmp_path / "store" / "kernels" / "test.zarr")


def test_fsspec_url_store_round_trips(tmp_path: Path) -> None:
    store = ArtifactStore("memory://crystaldb-test-store")
    array = store.create_array("a.zarr", shape=(4, 4), chunks=(2, 2), dtype="float32")
    array[:] = np.eye(4, dtype="float32")
    np.testing.assert_array_equal(store.open_array("a.zarr")[:], np.eye(4))
    assert store.uri("a.zarr").startswith("memory://")


def test_blobs_come_back_with_their_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    data = b"weights" * 1000
    digest = store.put_bytes("models/7/weights.pt", data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get_bytes("models/7/weights.pt") == data
    assert store.exists("models/7/weights.pt")
    assert store.describe()["entries"] == 1


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b"])
def test_keys_cannot_escape_the_store(tmp_path: Path, key: str) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(ValueError, match="relative path inside the store"):
        store.uri(key)


@pytest.mark.parametrize("root", ["local", "memory://crystaldb-test-uris"])
def test_artifacts_open_by_their_full_uri_from_anywhere(tmp_path: Path, root: str) -> None:
    store = ArtifactStore(str(tmp_path / "first") if root == "local" else root)
    store.create_array("kernels/1/matrix", shape=(3, 3), chunks=(2, 2))[:] = np.eye(3)
    store.put_bytes("models/m.npz", b"weights")
    elsewhere = ArtifactStore(str(tmp_path / "second"))  # the store configured now
    assert not elsewhere.exists("kernels/1/matrix")
    array = open_array_uri(store.uri("kernels/1/matrix"), "kernel 1")
    np.testing.assert_array_equal(array[:], np.eye(3))
    assert read_uri(store.uri("models/m.npz"), "model 1") == b"weights"
    assert uri_exists(store.uri("models/m.npz")) and not uri_exists(elsewhere.uri("models/m.npz"))


def test_an_unreachable_uri_names_the_artifact_and_the_uri(tmp_path: Path) -> None:
    gone = str(tmp_path / "moved" / "kernels" / "3" / "matrix")
    with pytest.raises(ArtifactUnavailable, match=f"^kernel 3: cannot read {re.escape(gone)} "):
        open_array_uri(gone, "kernel 3")
    with pytest.raises(ArtifactUnavailable, match=r"^model 4 \(m\): cannot read .*put its files"):
        read_uri(str(tmp_path / "moved" / "m.npz"), "model 4 (m)")
    with pytest.raises(ArtifactUnavailable, match=r"^model 5: cannot read nosuchprotocol://x"):
        read_uri("nosuchprotocol://x", "model 5")
