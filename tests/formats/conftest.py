"""Fixtures of the reader tests."""

from __future__ import annotations

import ase.io
import pytest
from ase import Atoms

from tests.realdata import MOLECULAR_XYZ


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    """The 20 molecular crystals, as ASE reads them."""
    return ase.io.read(MOLECULAR_XYZ, index=":")  # type: ignore[return-value]
