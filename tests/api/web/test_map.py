"""The kernel map over plain HTTP: one linked, titled circle per kernel row, coloured by gap."""

from __future__ import annotations

import re

import httpx

from crystaldb.api.web.kernel_map import UNLABELLED, colour
from crystaldb.schema import KernelEmbedding, KernelMatrix
from tests.api.web.conftest import KrrSite

POINT = re.compile(
    r'<a href="/structures/(\d+)"><circle [^>]*fill="(#[0-9a-f]{6})"[^>]*>'
    r"<title>structure (\d+): ([^,]+), band gap ([^<]+)</title></circle></a>"
)


def test_the_map_has_one_point_per_kernel_row(krr_site: KrrSite, krr_map: int) -> None:
    page = httpx.get(f"{krr_site.url}/map", params={"embedding": krr_map}, timeout=30)
    assert page.status_code == 200, page.text
    assert "cdn" not in page.text.lower() and "<script" not in page.text
    with krr_site.db.session() as session:
        rows = session.get_one(KernelMatrix, krr_site.kernel_id).row_ids
        ids = session.get_one(KernelEmbedding, krr_map).structure_ids
    points = POINT.findall(page.text)
    assert page.text.count("<circle") == len(points) == len(rows) == 50
    assert [int(p[0]) for p in points] == ids == rows
    assert all(link == titled for link, _, titled, _, _ in points)
    gaps = [p[4] for p in points if p[4] != "unlabelled"]
    assert gaps and all(g.endswith("eV (OptB88vdW)") for g in gaps)
    fills = {p[1] for p in points}
    assert colour(0.0) in fills and colour(1.0) in fills  # the scale spans the gaps
    assert UNLABELLED not in fills  # every member of release `jarvis` is labelled
    assert 'id="gap-scale"' in page.text and "band gap (OptB88vdW, eV)" in page.text


def test_the_map_index_lists_embeddings(krr_site: KrrSite, krr_map: int) -> None:
    page = httpx.get(f"{krr_site.url}/map", timeout=30)
    assert page.status_code == 200
    assert f'href="/map?embedding={krr_map}"' in page.text


def test_bad_and_unknown_embeddings_are_sentences(krr_site: KrrSite) -> None:
    bad = httpx.get(f"{krr_site.url}/map", params={"embedding": "x1"}, timeout=30)
    assert bad.status_code == 400 and "whole number" in bad.text
    unknown = httpx.get(f"{krr_site.url}/map", params={"embedding": 10**9}, timeout=30)
    assert unknown.status_code == 404 and "crystaldb kernel embed" in unknown.text
