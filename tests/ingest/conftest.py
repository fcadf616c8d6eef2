"""Fixtures for the ingestion tests: the shared real-data folder and the packaged sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realdata import SAMPLE, SHARED_DATA, SHARED_MISSING


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (../shared/data); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(SHARED_MISSING)
    return SHARED_DATA


@pytest.fixture(scope="session")
def cod(shared_data: Path) -> Path:
    """COD CIFs named by COD id."""
    return shared_data / "cod"


@pytest.fixture(scope="session")
def sample() -> Path:
    """The sample shipped inside the package."""
    return SAMPLE
