"""The artifact store: Zarr v3 arrays and model weights under one root, local or any fsspec URL.

Artifacts are written through the store under keys and their full URIs go on the database
rows; readers open those URIs (`open_array_uri`, `read_uri`), never a key rebuilt under the
store configured now, so moving CRYSTALDB_STORE_URL redirects no existing kernel or model.

A store on an object store (`s3://bucket/prefix` through s3fs) is reached the same way from
the client and from every worker: each process opens URIs with the fsspec options of the
settings it loaded (CRYSTALDB_STORE_OPTIONS, for URIs of the store's protocol), the endpoint
and keys otherwise coming from the standard AWS variables (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). No URI is ever read as a local path unless it is one.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore, LocalStore

from crystaldb.core.errors import ArtifactUnavailable, ConfigError
from crystaldb.platform.settings import load_settings

# Object stores whose first path component is a bucket that must exist before anything is put.
_BUCKETED = frozenset({"s3", "s3a", "gs", "gcs"})


@cache
def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """Missing, unreadable, unknown protocol; and botocore's network errors where s3fs is used."""
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, ImportError)
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no s3fs, so no s3:// store either
        return errors
    return (*errors, BotoCoreError, ClientError)


def storage_options(uri: str) -> dict[str, Any]:
    """The fsspec options to open `uri` with: CRYSTALDB_STORE_OPTIONS for the store's protocol.

    Read from the settings of the process that opens the URI (the client, or each worker),
    and only for URIs of the configured store's protocol, so the options of an s3:// store
    never reach a local path recorded before it.
    """
    settings = load_settings()
    if not settings.store_options:
        return {}
    return (
        dict(settings.store_options) if _protocol(uri) == _protocol(settings.store_location) else {}
    )


def _protocol(uri: str) -> str:
    """A URI's protocol ('file' for a plain path)."""
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else "file"


def _url_to_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec's filesystem and path for a URI, with the configured store options."""
    return fsspec.url_to_fs(uri, **storage_options(uri))


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

    def __init__(self, root: str, *, check: bool = True) -> None:
        """The store at `root`; a remote one is checked now (bucket there, endpoint answering)
        so that a job fails before it computes anything it could not keep, naming the URL."""
        try:
            fs, path = _url_to_fs(root)
        except (ValueError, ImportError, TypeError) as exc:  # TypeError: an unknown option
            raise ConfigError(f"CRYSTALDB_STORE_URL: cannot open {root!r}: {exc}") from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = path.rstrip("/")
        self.is_local = isinstance(fs, LocalFileSystem)
        self._checked = False
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        elif check:
            self.check()

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
        self.check()
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
        self.check()
        if self.is_local:  # object stores have no folders (and makedirs would make a bucket)
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        try:
            with self.fs.open(path, "wb") as handle:
                handle.write(data)
        except _unreachable_errors() as exc:
            raise ArtifactUnavailable(f"artifact {key}: cannot write {path} ({exc})") from None
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

    def check(self) -> None:
        """Fail with the store's URL unless it can be written: the bucket exists and answers.

        Checked once per store object (when it is made, or before its first write when made
        with check=False); s3fs would otherwise create a missing bucket on the first write.
        """
        if self._checked or self.is_local:
            return
        protocol = _protocol(self.root_uri)
        if protocol in _BUCKETED:
            bucket = self.root.split("/", 1)[0]
            try:
                self.fs.info(bucket)
            except FileNotFoundError:
                raise ConfigError(
                    f"CRYSTALDB_STORE_URL={self.root_uri}: bucket {bucket!r} does not exist at"
                    f" {_endpoint(self.fs)}; create it (e.g. `aws s3 mb {protocol}://{bucket}`)"
                    " or name an existing one"
                ) from None
            except _unreachable_errors() as exc:
                raise ArtifactUnavailable(
                    f"CRYSTALDB_STORE_URL={self.root_uri}: cannot reach the object store at"
                    f" {_endpoint(self.fs)} ({type(exc).__name__}: {exc}); check AWS_ENDPOINT_URL"
                    " (or endpoint_url in CRYSTALDB_STORE_OPTIONS) and the credentials"
                ) from None
        self._checked = True

    def describe(self) -> dict[str, Any]:
        """What `crystaldb status` shows about the store; an unreachable one says why."""
        found: dict[str, Any] = {"url": self.root_uri, "local": self.is_local}
        failures: tuple[type[BaseException], ...] = (ConfigError, ArtifactUnavailable)
        failures += _unreachable_errors()
        try:
            self.check()
            entries = self.fs.ls(self.root, detail=False) if self.fs.exists(self.root) else []
        except failures as exc:
            return {**found, "entries": 0, "reachable": False, "error": str(exc)}
        return {**found, "entries": len(entries), "reachable": True}


def describe_store(root: str) -> dict[str, Any]:
    """The store at `root` as `crystaldb status` shows it, never raising: unreachable says why."""
    try:
        store = ArtifactStore(root, check=False)
    except ConfigError as exc:
        return {"url": root, "local": False, "entries": 0, "reachable": False, "error": str(exc)}
    return store.describe()


def _zarr_store(uri: str, read_only: bool = False) -> LocalStore | FsspecStore:
    """The Zarr store at a URI: native local I/O for paths, fsspec for other URLs."""
    options = storage_options(uri)
    fs, path = fsspec.url_to_fs(uri, **options)
    if isinstance(fs, LocalFileSystem):
        return LocalStore(path, read_only=read_only)
    return FsspecStore.from_url(uri, storage_options=options, read_only=read_only)


def open_array_uri(uri: str, what: str, mode: str = "r") -> zarr.Array:
    """The array at a row's stored URI; `what` (e.g. "kernel 3") names it if unreachable."""
    try:
        return zarr.open_array(store=_zarr_store(uri, read_only=mode == "r"), mode=mode)
    except _unreachable_errors() as exc:
        raise ArtifactUnavailable(_unreachable(what, uri, exc)) from None


def read_uri(uri: str, what: str) -> bytes:
    """The blob at a row's stored URI (model weights); `what` names it if unreachable."""
    try:
        with fsspec.open(uri, "rb", **storage_options(uri)) as handle:
            return bytes(handle.read())
    except _unreachable_errors() as exc:
        raise ArtifactUnavailable(_unreachable(what, uri, exc)) from None


def uri_exists(uri: str) -> bool:
    """Whether anything is at a stored URI (False where it cannot be reached)."""
    try:
        fs, path = _url_to_fs(uri)
        return bool(fs.exists(path))
    except _unreachable_errors():
        return False


def _endpoint(fs: fsspec.AbstractFileSystem) -> str:
    """Where an object store's requests go, for messages: the option, the AWS variable, AWS."""
    configured = getattr(fs, "endpoint_url", None) or (
        getattr(fs, "client_kwargs", None) or {}
    ).get("endpoint_url")
    named = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return str(configured or named or "the provider's default endpoint")


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
