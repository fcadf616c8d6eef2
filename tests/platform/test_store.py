"""The artifact store: chunked Zarr v3 arrays and blobs, on disk or behind an fsspec URL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from crystaldb.platform.store import ArtifactStore


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
