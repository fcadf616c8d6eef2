"""The artifact store: Zarr v3 arrays and model weights under one root, local or any fsspec URL.

Artifacts are written through the store under keys and their full URIs go on the database
rows; readers open those URIs (`open_array_uri`, `read_uri`), never a key rebuilt under the
store configured now, so moving CRYSTALDB_STORE_URL redirects no existing kernel or model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore, LocalStore

from crystaldb.core.errors import ArtifactUnavailable, ConfigError

_UNREACHABLE = (OSError, ValueError, ImportError)  # missing, unreadable, unknown protocol


class Keys:
    """The one key scheme of the store: where each kind of artifact is written.

    Only writers use it: the full URI of what they wrote goes on the database row, and
    readers open that URI, never a key rebuilt here.
    """

    @staticmethod
    def descriptors(set_id: int) -> str:
        """A descriptor set's folder: values, keys, indptr and norms arrays."""
        return f"descriptors/{set_id}"

    @staticmethod
    def kernel(kernel_id: int) -> str:
        """A kernel's folder; its matrix array is `matrix` inside."""
        return f"kernels/{kernel_id}"

    @staticmethod
    def weights(model_name: str, suffix: str) -> str:
        """A model's weights file (npz for KRR, pt for the networks)."""
        return f"models/{model_name}.{suffix}"

    @staticmethod
    def learning_curve(model_name: str) -> str:
        """A model's learning-curve figure."""
        return f"models/{model_name}-learning-curve.png"

    @staticmethod
    def checkpoint(name: str) -> str:
        """A network's resumable training state, removed once the model is stored."""
        return f"checkpoints/{name}.pt"


class ArtifactStore:
    """Keys are relative paths ('kernels/3.zarr'); URIs are what the database records."""

    def __init__(self, root: str) -> None:
        try:
            fs, path = fsspec.url_to_fs(root)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"CRYSTALDB_STORE_URL: cannot open {root!r}: {exc}") from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = path.rstrip("/")
        self.is_local = isinstance(fs, LocalFileSystem)
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @property
    def root_uri(self) -> str:
        """The store's own root, as a path or URL."""
        return self.root if self.is_local else self.fs.unstrip_protocol(self.root)

    def uri(self, key: str) -> str:
        """A URI that fsspec (and so every worker) can open."""
        return f"{self.root_uri}/{_check_key(key)}"

    def create_array(
        self,
        key: str,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: Any = "float64",
        compressed: bool = True,
    ) -> zarr.Array:
        """A new chunked Zarr v3 array, filled with NaN so unwritten tiles are visible.

        `compressed=False` for kernel matrices: zstd shrinks their float64 chunks by about 8%
        and doubles the time to write and read them (SOAP spectra, with their zeros, shrink
        by about 27% and stay compressed).
        """
        fill = np.nan if np.dtype(dtype).kind == "f" else 0
        return zarr.create_array(
            store=_zarr_store(self.uri(key)),
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            zarr_format=3,
            overwrite=True,
            compressors="auto" if compressed else None,
        )

    def open_array(self, key: str, mode: str = "r") -> zarr.Array:
        """An existing array, read-only unless asked otherwise."""
        return open_array_uri(self.uri(key), f"artifact {key}", mode)

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write a blob (model weights) and return its sha256 for the database row."""
        path = self.uri(key)
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        with self.fs.open(path, "wb") as handle:
            handle.write(data)
        return hashlib.sha256(data).hexdigest()

    def get_bytes(self, key: str) -> bytes:
        """Read a blob back."""
        return read_uri(self.uri(key), f"artifact {key}")

    def remove(self, key: str) -> None:
        """Delete one object (a finished checkpoint, say)."""
        self.fs.rm(self.uri(key))

    def exists(self, key: str) -> bool:
        """Whether a key holds anything."""
        return bool(self.fs.exists(self.uri(key)))

    def describe(self) -> dict[str, Any]:
        """What `crystaldb status` shows about the store."""
        entries = self.fs.ls(self.root, detail=False) if self.fs.exists(self.root) else []
        return {"url": self.root_uri, "local": self.is_local, "entries": len(entries)}


def _zarr_store(uri: str, read_only: bool = False) -> LocalStore | FsspecStore:
    """The Zarr store at a URI: native local I/O for paths, fsspec for other URLs."""
    fs, path = fsspec.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        return LocalStore(path, read_only=read_only)
    return FsspecStore.from_url(uri, read_only=read_only)


def open_array_uri(uri: str, what: str, mode: str = "r") -> zarr.Array:
    """The array at a row's stored URI; `what` (e.g. "kernel 3") names it if unreachable."""
    try:
        return zarr.open_array(store=_zarr_store(uri, read_only=mode == "r"), mode=mode)
    except _UNREACHABLE as exc:
        raise ArtifactUnavailable(_unreachable(what, uri, exc)) from None


def read_uri(uri: str, what: str) -> bytes:
    """The blob at a row's stored URI (model weights); `what` names it if unreachable."""
    try:
        with fsspec.open(uri, "rb") as handle:
            return bytes(handle.read())
    except _UNREACHABLE as exc:
        raise ArtifactUnavailable(_unreachable(what, uri, exc)) from None


def uri_exists(uri: str) -> bool:
    """Whether anything is at a stored URI (False where it cannot be reached)."""
    try:
        fs, path = fsspec.url_to_fs(uri)
        return bool(fs.exists(path))
    except _UNREACHABLE:
        return False


def _unreachable(what: str, uri: str, exc: BaseException) -> str:
    """The one message for a stored URI that cannot be read, and what to do about it."""
    return (
        f"{what}: cannot read {uri} ({exc}); artifacts are read from the URI recorded when"
        " they were written, so if the store moved (CRYSTALDB_STORE_URL), put its files back"
        " at that URI"
    )


def _check_key(key: str) -> str:
    """Keys stay inside the store: no absolute paths, no '..'."""
    parts = Path(key).parts
    if not key or key.startswith("/") or ".." in parts:
        raise ValueError(f"artifact key {key!r} must be a relative path inside the store")
    return key.strip("/")
