"""Fixtures for the ingestion tests: the packaged sample, and the shared corpus for `shared` tests.

The default run reads the sample inside the package (`sample`, `cod`). The larger corpus in
../shared/data (`shared_data`, `shared_cod`) is only for tests marked `shared`, which
tests/conftest.py skips, saying why, where it is absent; an unmarked test asking for it fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realdata import SAMPLE, SHARED_DATA


@pytest.fixture(scope="session")
def sample() -> Path:
    """The sample shipped inside the package."""
    return SAMPLE


@pytest.fixture(scope="session")
def cod(sample: Path) -> Path:
    """The sample's COD CIFs, named by COD id (215 of the shared corpus's 229)."""
    return sample / "cod"


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The shared real-data folder (../shared/data), for tests marked `shared` only."""
    if request.node.get_closest_marker("shared") is None:
        pytest.fail(f"{request.node.nodeid} reads {SHARED_DATA}: mark it @pytest.mark.shared")
    return SHARED_DATA


@pytest.fixture
def shared_cod(shared_data: Path) -> Path:
    """All 229 COD CIFs of the shared corpus, named by COD id."""
    return shared_data / "cod"
