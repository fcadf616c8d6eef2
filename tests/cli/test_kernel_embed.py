"""`crystaldb kernel embed` as a user runs it: an embedding id out, a rectangle refused by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sklearn

from crystaldb.formats.chemiscope import read_dataset
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


@pytest.mark.slow
def test_tsne_and_the_release_as_a_chemiscope_file(
    jarvis: LabelledDatabase, tmp_path: Path
) -> None:
    ids = list(select_structures(jarvis.db, release=jarvis.release).structure_ids)
    square = build_kernel(jarvis.db, jarvis.settings, ids, hypers=EMBED, tile=16, workers=1)
    env = {
        "CRYSTALDB_DATABASE_URL": str(jarvis.settings.database_url),
        "CRYSTALDB_DATA_DIR": str(jarvis.settings.data_dir),
    }
    embed = ("kernel", "embed", "--kernel", str(square.kernel_id), "--method", "tsne")
    refused = run_cli(*embed, "--perplexity", "50", env=env)
    assert refused.returncode == 2
    assert "--perplexity 50: t-SNE needs a perplexity" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    result = run_cli(*embed, "--perplexity", "12", "--seed", "4", "--workers", "1", env=env)
    assert result.returncode == 0, result.stderr
    found = re.search(
        r"embedding (\d+): 50 points of kernel \d+ by tsne \(perplexity 12, seed 4,"
        rf" scikit-learn {re.escape(sklearn.__version__)}; run \d+\)",
        result.stdout,
    )
    assert found, result.stdout
    with jarvis.db.session() as session:
        row = session.get_one(KernelEmbedding, int(found.group(1)))
        points = dict(zip(row.structure_ids, zip(row.x, row.y, strict=True), strict=True))
    out = tmp_path / "map"
    export = ("release", "export", jarvis.release, "--format", "chemiscope", "--out", str(out))
    exported = run_cli(*export, env=env)
    assert exported.returncode == 0, exported.stderr
    assert f"kernel map: embedding {found.group(1)} (t-SNE of kernel" in exported.stdout
    assert "jarvis.chemiscope.json.gz" in exported.stdout
    dataset = read_dataset(out / "jarvis.chemiscope.json.gz")
    shown = dataset["properties"]
    assert len(dataset["structures"]) == len(ids) == 50
    assert shown["structure id"]["values"] == [float(i) for i in ids]  # release order
    assert shown["t-SNE[1]"]["values"] == [points[i][0] for i in ids]
    assert shown["t-SNE[2]"]["values"] == [points[i][1] for i in ids]
    assert shown["split"]["values"] == ["train"] * jarvis.n_train + ["test"] * jarvis.n_test
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "chemiscope"
    unknown = run_cli(*export[:-1], str(tmp_path / "other"), "--embedding", "999999", env=env)
    assert unknown.returncode == 2 and "--embedding 999999: no such embedding" in unknown.stderr
