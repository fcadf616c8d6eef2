"""A ReleaseData built from real structures, for the exporter tests (no database needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from crystaldb.core.records import StructureRecord
from crystaldb.core.release_data import Member, ReleaseData
from crystaldb.formats.payload import process_file
from tests.realdata import MOLECULAR_XYZ, SAMPLE

N_COD = 20
N_TRAIN = 30
LABEL_METHOD = {
    "functional": "PBE",
    "code": "VASP",
    "code_version": "5.4.4",
    "parameters": {"encut": 520, "kpoint_density": 1000},
    "reference": "Olsthoorn et al., Adv. Quantum Technol. 2019, 2, 1900023",
}


def real_records() -> list[StructureRecord]:
    """The valid frames of the molecular crystals (tests/data), then the first 20 COD files of
    the package's sample that validate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spglib's deprecation notice, pymatgen's CIF notes
        records = [r for r in process_file(MOLECULAR_XYZ) if isinstance(r, StructureRecord)]
        cod: list[StructureRecord] = []
        for path in sorted((SAMPLE / "cod").glob("*.cif")):
            valid = [r for r in process_file(path) if isinstance(r, StructureRecord)]
            cod.extend(valid[:1])
            if len(cod) == N_COD:
                break
    return records + cod


def member_of(record: StructureRecord, position: int, split: str, label: float) -> Member:
    """A release member from a validated record; xyz frames get made-up COD ids."""
    cod = record.external_ids.get("cod") or str(4000001 + position)
    return Member(
        position=position,
        structure_id=1000 + position,
        split=split,
        lattice=np.array(record.lattice, dtype=np.float64),
        frac_coords=np.array(record.frac_coords, dtype=np.float64),
        atomic_numbers=np.array(record.atomic_numbers, dtype=np.int64),
        reduced_formula=record.reduced_formula,
        elements=tuple(record.elements),
        spacegroup_number=record.spacegroup_number,
        spacegroup_symbol=record.spacegroup_symbol,
        external_ids={"cod": cod},
        label=label,
        mass_numbers=None if record.mass_numbers is None else np.array(record.mass_numbers),
    )


def release_of(members: list[Member], name: str = "omdb-test", version: str = "1.0") -> ReleaseData:
    """A band-gap release around the given members."""
    counts = [sum(m.split == s for m in members) for s in ("train", "test")]
    return ReleaseData(
        name=name,
        version=version,
        query="nelements >= 2",
        split_spec=f"ordered:{counts[0]},{counts[1]}",
        label_property="band_gap",
        label_unit="eV",
        label_method=LABEL_METHOD,
        members=tuple(members),
        database_identity={
            "database": "crystaldb_test",
            "server_version": "16.2",
            "system_identifier": "7311111111111111111",
        },
        crystaldb_version="0.1.0",
    )


def band_gap_release() -> ReleaseData:
    """38 real structures (18 molecular crystals, 20 COD), made-up gaps, first 30 train."""
    records = real_records()
    gaps = np.random.default_rng(7).uniform(0.0, 8.0, len(records)).tolist()
    gaps[3] = 0.0  # OMDB-GAP1 has exact zeros
    members = [
        member_of(r, i, "train" if i < N_TRAIN else "test", gaps[i]) for i, r in enumerate(records)
    ]
    return release_of(members)


@pytest.fixture(scope="session")
def release() -> ReleaseData:
    """The test release, built once (reading and validating the real files takes a second)."""
    return band_gap_release()
