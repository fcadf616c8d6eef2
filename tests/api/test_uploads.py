"""An upload is refused exactly as `crystaldb ingest` refuses the same file: the same reason
code and the same message, the file named by its upload name instead of its path."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crystaldb.jobs.ingest import ingest_paths
from crystaldb.schema import IngestReject
from tests.api.conftest import Api
from tests.conftest import DatabaseFactory
from tests.realdata import SAMPLE

pytestmark = pytest.mark.slow

MUTATION = "mutation($f: Upload!) { predictBandGap(file: $f) { mean } }"
# Bad files no sample holds: blank in each format (ingest records a content once, so each
# differs; malformed/empty-file.cif is the empty one), not a structure format, gzip-compressed.
WRITTEN = {
    "blank.xyz": b"\n  \n",
    "POSCAR": b" ",
    "blank.json": b"\n",
    "odd.json": b'{"a": 1}',
    "notes.txt": b"a README beside the structures",
    "gzipped.cif": gzip.compress((SAMPLE / "cod" / "1000002.cif").read_bytes()),
}
SAMPLED = [  # refused while reading (malformed) or while checking the structure (cod)
    *sorted((SAMPLE / "malformed").glob("*.cif")),
    SAMPLE / "cod" / "1000001.cif",  # too_many_sites
    SAMPLE / "cod" / "1000023.cif",  # partial_occupancy
    SAMPLE / "cod" / "2000056.cif",  # sites_too_close
    SAMPLE / "cod" / "9005728.cif",  # not_utf8
]


@pytest.fixture(scope="module")
def refused_by_ingest(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str]]:
    """Reason and message of each bad file, ingested by `ingest_paths`; the path made a name."""
    folder = tmp_path_factory.mktemp("bad")
    for name, data in WRITTEN.items():
        (folder / name).write_bytes(data)
    for path in SAMPLED:
        shutil.copy(path, folder / path.name)
    settings, db = databases.migrated("crystaldb_uploads", folder.parent / "data")
    ingest_paths(db, settings, sorted(folder.iterdir()), workers=1)
    with db.session() as session:
        rows = session.execute(select(IngestReject.path, IngestReject.reason, IngestReject.message))
        refused = {Path(p).name: (r, m.replace(p, Path(p).name)) for p, r, m in rows}
    db.dispose()
    return refused


def _upload(api: Api, name: str, data: bytes) -> dict[str, Any]:
    """predictBandGap with the file as a multipart upload: the first error of the answer."""
    operations = json.dumps({"query": MUTATION, "variables": {"f": None}})
    response = httpx.post(
        f"{api.url}/graphql",
        data={"operations": operations, "map": json.dumps({"0": ["variables.f"]})},
        files={"0": (name, data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {api.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None, body
    return dict(body["errors"][0])


def test_every_bad_file_is_refused_by_ingest(refused_by_ingest: dict[str, tuple[str, str]]):
    assert set(refused_by_ingest) == {*WRITTEN, *(p.name for p in SAMPLED)}
    reasons = {reason for reason, _ in refused_by_ingest.values()}
    assert {"no_atoms", "binary", "not_utf8", "parse_error", "unsupported_format"} <= reasons
    assert {"too_many_sites", "partial_occupancy", "sites_too_close"} <= reasons


def test_an_upload_gets_the_reason_and_message_ingest_gives(
    api: Api, refused_by_ingest: dict[str, tuple[str, str]]
) -> None:
    files = {**WRITTEN, **{path.name: path.read_bytes() for path in SAMPLED}}
    for name, (reason, message) in sorted(refused_by_ingest.items()):
        error = _upload(api, name, files[name])
        assert error["extensions"] == {"code": "UPLOAD_REFUSED", "reason": reason}, name
        assert error["message"] == f"file: cannot be used: {message}"


def test_an_empty_file_is_empty_in_every_format(
    refused_by_ingest: dict[str, tuple[str, str]],
) -> None:
    """One check before the parsers, so no format turns an empty file into a parse error."""
    for name in ("empty-file.cif", "blank.xyz", "POSCAR", "blank.json"):
        assert refused_by_ingest[name] == ("no_atoms", f"{name}: file is empty")
