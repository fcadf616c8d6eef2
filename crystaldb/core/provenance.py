"""What ran where: host, software versions and device, captured once per run."""

from __future__ import annotations

import platform
import socket
from importlib import metadata

import crystaldb

# Libraries whose version changes results; reported when installed.
TRACKED_PACKAGES = (
    "numpy",
    "scipy",
    "sqlalchemy",
    "psycopg",
    "dask",
    "distributed",
    "zarr",
    "gemmi",
    "spglib",
    "pymatgen",
    "ase",
    "featomic",
    "dscribe",
    "tblite",
    "torch",
    "torch_geometric",
)


def software_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python, crystaldb and the tracked libraries that are installed."""
    versions = {"python": platform.python_version(), "crystaldb": crystaldb.__version__}
    for name in (*TRACKED_PACKAGES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_name() -> str:
    """The machine a job ran on."""
    return socket.gethostname()
