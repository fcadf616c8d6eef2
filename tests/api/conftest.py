"""A real API server (uvicorn in a thread) over a test database filled with real structures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette

from crystaldb.api.app import create_app
from crystaldb.core.records import LabelSpec
from crystaldb.jobs.load import write_chunk
from crystaldb.platform.database import Database
from crystaldb.schema import (
    Calculation,
    ExternalId,
    Label,
    Model,
    Prediction,
    Release,
    ReleaseMember,
    Structure,
)
from crystaldb.schema.tokens import create_token
from tests.api.derived import add_graphs, add_models
from tests.conftest import DatabaseFactory
from tests.realdata import SAMPLE
from tests.sampledb import add_band_gap, open_batch, stand_in_gap, valid_records

RELEASE = ("api-test", "1.0")


@dataclass
class Row:
    """What the oracle knows about one stored structure."""

    id: int
    columns: dict[str, Any]
    gaps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ids: set[tuple[str, str]] = field(default_factory=set)
    releases: set[str] = field(default_factory=set)
    predictions: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class Api:
    """The running server, its database and the stored rows."""

    url: str
    db: Database
    rows: dict[int, Row]
    client: httpx.Client
    graph_ids: list[int] = field(default_factory=list)
    _token: str | None = None

    @property
    def token(self) -> str:
        """A live API token (an operator's), created on first use."""
        if self._token is None:
            self._token = create_token(self.db, "api-test-operator")
        return self._token

    def post(self, query: str, **variables: Any) -> dict[str, Any]:
        """POST a query; the decoded response (data and/or errors)."""
        return self._post(query, variables, {})

    def _post(
        self, query: str, variables: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        # json.dumps escapes what httpx's encoder would refuse (lone surrogates), as clients do
        body = json.dumps({"query": query, "variables": variables})
        headers = {"content-type": "application/json", **headers}
        response = self.client.post(f"{self.url}/graphql", content=body, headers=headers)
        assert response.status_code in (200, 400), response.text
        return response.json()

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The data of a query that must succeed."""
        body = self.post(query, **variables)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def operator_data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The data of a query sent with a live API token, which must succeed."""
        body = self._post(query, variables, {"Authorization": f"Bearer {self.token}"})
        assert "errors" not in body, body["errors"]
        return body["data"]


def _store(db: Database) -> None:
    """COD (PBE gaps on four in five) and CURATED-COFs, as the ingest pipeline writes them."""
    batch_id = open_batch(db, "api-test")
    cod = valid_records(SAMPLE / "cod")
    cod = [
        replace(r, properties={"pbe_gap": stand_in_gap(r)}) if i % 5 else r
        for i, r in enumerate(cod)
    ]
    write_chunk(db, batch_id, cod, labels=LabelSpec("pbe_gap", "band_gap", "eV", "PBE", "VASP"))
    write_chunk(db, batch_id, valid_records(SAMPLE / "cofs", database="curated-cofs"))


def _decorate(db: Database) -> None:
    """HSE06 gaps on every fourth structure, a second PBE gap on one, and a release."""
    with db.session() as session:
        ids = sorted(session.scalars(select(Structure.id)))
        for index, sid in enumerate(ids):
            if index % 4 == 0:
                add_band_gap(session, sid, "HSE06", round(0.5 + index * 0.041 % 5, 3))
        add_band_gap(session, ids[1], "PBE", 5.5)
        release = Release(name=RELEASE[0], version=RELEASE[1], query="nsites <= 1000")
        session.add(release)
        session.flush()
        session.add_all(
            ReleaseMember(
                release_id=release.id, position=p, structure_id=s, split=("train", "test")[p % 2]
            )
            for p, s in enumerate(ids[::3])
        )


def _rows(db: Database) -> dict[int, Row]:
    """Every structure read back plainly, for the oracle."""
    columns = [c for c in Structure.__table__.c if c.name not in ("lattice", "frac_coords")]
    with db.session() as session:
        rows = {r.id: Row(r.id, dict(r._mapping)) for r in session.execute(select(*columns))}
        gaps = select(Label.structure_id, Calculation.functional, Label.value).join(
            Calculation, Calculation.id == Label.calculation_id
        )
        for sid, functional, value in session.execute(gaps.where(Label.property == "band_gap")):
            rows[sid].gaps[functional].append(value)
        for sid, database, eid in session.execute(
            select(ExternalId.structure_id, ExternalId.database, ExternalId.external_id)
        ):
            rows[sid].ids.add((database, eid))
        for sid, name, version in session.execute(
            select(ReleaseMember.structure_id, Release.name, Release.version).join(Release)
        ):
            rows[sid].releases.add(f"{name}:{version}")
        for sid, name, value in session.execute(
            select(Prediction.structure_id, Model.name, Prediction.value).join(Model)
        ):
            rows[sid].predictions[name].append(value)
    return rows


def _free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; its base URL until the block ends."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="package")
def api(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Fill a fresh database once, serve it over HTTP for the package, stop afterwards."""
    settings, db = databases.migrated("crystaldb_api", tmp_path_factory.mktemp("api-data"))
    _store(db)
    _decorate(db)
    add_models(db, RELEASE)
    graph_ids = add_graphs(db)
    with serving(create_app(db, settings)) as url, httpx.Client(timeout=30) as client:
        yield Api(url, db, _rows(db), client, graph_ids)
    db.dispose()
