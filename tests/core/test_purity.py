"""The science loads no database, cluster or parser generator, at run time as well as by name.

import-linter (in .ci/run) checks the imports crystaldb writes; this checks what a Dask worker
actually loads, third-party imports included, when it unpickles a science function.
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("sqlalchemy", "psycopg", "alembic", "dask", "distributed", "lark", "pgserver")
SCIENCE = (
    "crystaldb.core.soap",
    "crystaldb.core.mbtr",
    "crystaldb.core.xtb",
    "crystaldb.core.embedding",
    "crystaldb.core.network_hypers",
    "crystaldb.core.graphs",
    "crystaldb.core.graph_tensors",
    "crystaldb.core.networks",
    "crystaldb.core.training",
    "crystaldb.core.krr",
    "crystaldb.core.krr_model",
    "crystaldb.core.validate",
    "crystaldb.core.release_data",
    "crystaldb.formats.payload",
    "crystaldb.formats.labels",
    "crystaldb.formats.readers",
    "crystaldb.formats.cif",
    "crystaldb.formats.extxyz",
    "crystaldb.formats.poscar",
    "crystaldb.formats.structure_json",
    "crystaldb.formats.omdb_gap1",
    "crystaldb.formats.matbench",
    "crystaldb.formats.optimade_jsonl",
    "crystaldb.formats.parquet",
    "crystaldb.formats.members",
)


def test_the_science_imports_no_database_cluster_or_parser_generator() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {SCIENCE!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
