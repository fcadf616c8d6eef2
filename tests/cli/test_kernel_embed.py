"""`crystaldb kernel embed` as a user runs it: an embedding id out, a rectangle refused by name."""

from __future__ import annotations

import re

from crystaldb.jobs.kernels import build_kernel
from crystaldb.query.selection import select_structures
from crystaldb.schema import KernelEmbedding
from tests.conftest import run_cli
from tests.jarvis import LabelledDatabase
from tests.jobs.test_embeddings import EMBED


def test_kernel_embed_prints_the_embedding_id(jarvis: LabelledDatabase) -> None:
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    square = build_kernel(jarvis.db, jarvis.settings, ids, hypers=EMBED, tile=16, workers=1)
    rect = build_kernel(
        jarvis.db, jarvis.settings, ids[40:], ids[:40], hypers=EMBED, tile=16, workers=1
    )
    env = {
        "CRYSTALDB_DATABASE_URL": str(jarvis.settings.database_url),
        "CRYSTALDB_DATA_DIR": str(jarvis.settings.data_dir),
    }
    result = run_cli("kernel", "embed", "--kernel", str(square.kernel_id), env=env)
    assert result.returncode == 0, result.stderr
    found = re.search(r"embedding (\d+): 50 points of kernel \d+ by kpca", result.stdout)
    assert found, result.stdout
    with jarvis.db.session() as session:
        row = session.get_one(KernelEmbedding, int(found.group(1)))
        assert row.kernel_id == square.kernel_id and len(row.x) == len(ids)
    refused = run_cli("kernel", "embed", "--kernel", str(rect.kernel_id), env=env)
    assert refused.returncode != 0
    assert "rectangle" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
