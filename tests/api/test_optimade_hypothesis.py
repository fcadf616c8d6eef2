"""Random OPTIMADE filters (hypothesis): AND / OR / NOT of comparisons on nelements, nsites,
space group and PBE band gap, of elements HAS ALL / ANY / ONLY, of the provider fields (band
gaps by functional, predicted band gaps by model, releases, crystal system, space group
symbol, COD id) and of one property against another (`nsites > nelements`), each answered by
the server and by a Python oracle over the same rows."""

from __future__ import annotations

import operator
from collections.abc import Callable

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.api.conftest import Api, Row
from tests.api.test_optimade import checked

Oracle = Callable[[Row], bool]
Case = tuple[str, Oracle]
OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
SETS: dict[str, Callable[[set[str], set[str]], bool]] = {
    "ALL": lambda wanted, held: wanted <= held,
    "ANY": lambda wanted, held: bool(wanted & held),
    "ONLY": lambda wanted, held: held <= wanted,
}


def _compare(
    name: str, values: Callable[[Row], list[float]], numbers: list[float]
) -> st.SearchStrategy[Case]:
    """`name op number`: true when any of the row's values satisfies it (none: false)."""

    def build(op: str, number: float) -> Case:
        return f"{name} {op} {number}", lambda r: any(OPS[op](v, number) for v in values(r))

    return st.builds(build, st.sampled_from(sorted(OPS)), st.sampled_from(numbers))


def _has(elements: list[str]) -> st.SearchStrategy[Case]:
    """elements HAS ALL / ANY / ONLY of one to three symbols."""

    def build(mode: str, symbols: list[str]) -> Case:
        quoted = ", ".join(f'"{s}"' for s in symbols)
        wanted = set(symbols)
        return (
            f"elements HAS {mode} {quoted}",
            lambda r: SETS[mode](wanted, set(r.columns["elements"])),
        )

    picks = st.lists(st.sampled_from(elements), min_size=1, max_size=3, unique=True)
    return st.builds(build, st.sampled_from(sorted(SETS)), picks)


# numeric properties compared with each other, and their values on a row (none if unknown)
NUMERIC: dict[str, Callable[[Row], list[float]]] = {
    "nsites": lambda r: [r.columns["nsites"]],
    "nelements": lambda r: [r.columns["nelements"]],
    "nperiodic_dimensions": lambda r: [3],
    "_crystaldb_space_group_number": lambda r: [
        v for v in [r.columns["spacegroup_number"]] if v is not None
    ],
    "_crystaldb_band_gap_pbe": lambda r: r.gaps.get("PBE", []),
    "_crystaldb_band_gap_hse06": lambda r: r.gaps.get("HSE06", []),
    "_crystaldb_predicted_band_gap_linear_density": lambda r: r.predictions.get(
        "linear-density", []
    ),
}
COMPARABLE = [name for name in NUMERIC if "predicted" not in name]  # against each other


def _versus() -> st.SearchStrategy[Case]:
    """`a op b` of two numeric properties: both known and some pair compares so."""

    def build(left: str, op: str, right: str) -> Case:
        values, others = NUMERIC[left], NUMERIC[right]
        return (
            f"{left} {op} {right}",
            lambda r: any(OPS[op](a, b) for a in values(r) for b in others(r)),
        )

    return st.builds(
        build,
        st.sampled_from(COMPARABLE),
        st.sampled_from(sorted(OPS)),
        st.sampled_from(COMPARABLE),
    )


def _equal_text(
    name: str, values: Callable[[Row], list[str]], seen: list[str]
) -> st.SearchStrategy[Case]:
    """`name = "x"` / `name != "x"` (a known value that differs) and IS KNOWN / UNKNOWN."""

    def build(op: str, value: str) -> Case:
        if op == "known":
            return f"{name} IS KNOWN", lambda r: bool(values(r))
        if op == "unknown":
            return f"{name} IS UNKNOWN", lambda r: not values(r)
        return f'{name} {op} "{value}"', lambda r: any(OPS[op](v, value) for v in values(r))

    return st.builds(build, st.sampled_from(["=", "!=", "known", "unknown"]), st.sampled_from(seen))


def _releases(refs: list[str]) -> st.SearchStrategy[Case]:
    """_crystaldb_releases HAS / HAS ANY / HAS ONLY "NAME:VERSION" and LENGTH."""

    def build(mode: str, picked: list[str]) -> Case:
        quoted = ", ".join(f'"{ref}"' for ref in picked)
        wanted = set(picked)
        if mode == "LENGTH":
            return "_crystaldb_releases LENGTH >= 1", lambda r: bool(r.releases)
        return (
            f"_crystaldb_releases HAS {mode} {quoted}",
            lambda r: SETS[mode](wanted, set(r.releases)),
        )

    picks = st.lists(st.sampled_from(refs), min_size=1, max_size=2, unique=True)
    return st.builds(build, st.sampled_from([*sorted(SETS), "LENGTH"]), picks)


def _join(word: str, parts: list[Case]) -> Case:
    """`(a) AND (b) ...` or OR."""
    text = f" {word} ".join(f"({t})" for t, _ in parts)
    tests = [test for _, test in parts]
    if word == "AND":
        return text, lambda r: all(t(r) for t in tests)
    return text, lambda r: any(t(r) for t in tests)


def _negate(case: Case) -> Case:
    text, test = case
    return f"NOT ({text})", lambda r: not test(r)


def filters(rows: list[Row]) -> st.SearchStrategy[Case]:
    """Filters built from the rows' own values, so most select something."""
    column = lambda name: lambda r: [] if r.columns[name] is None else [r.columns[name]]  # noqa: E731
    groups = sorted({r.columns["spacegroup_number"] for r in rows} - {None})
    gaps = sorted({round(g, 1) for r in rows for gs in r.gaps.values() for g in gs})
    predicted = sorted({round(p, 1) for r in rows for ps in r.predictions.values() for p in ps})
    text = lambda name: lambda r: [] if r.columns[name] is None else [r.columns[name]]  # noqa: E731
    cods = lambda r: [i for d, i in r.ids if d == "cod"]  # noqa: E731
    leaves = st.one_of(
        _compare("nelements", column("nelements"), list(range(1, 7))),
        _compare("nsites", column("nsites"), [1, 8, 20, 40, 60, 100, 150, 300]),
        _compare("_crystaldb_space_group_number", column("spacegroup_number"), groups),
        _compare("_crystaldb_band_gap_pbe", NUMERIC["_crystaldb_band_gap_pbe"], gaps),
        _compare("_crystaldb_band_gap_hse06", NUMERIC["_crystaldb_band_gap_hse06"], gaps),
        _compare(
            "_crystaldb_predicted_band_gap_linear_density",
            NUMERIC["_crystaldb_predicted_band_gap_linear_density"],
            predicted,
        ),
        _has(sorted({e for r in rows for e in r.columns["elements"]})),
        _versus(),
        _equal_text(
            "_crystaldb_crystal_system",
            text("crystal_system"),
            sorted({r.columns["crystal_system"] for r in rows} - {None}),
        ),
        _equal_text(
            "_crystaldb_space_group_symbol",
            text("spacegroup_symbol"),
            sorted({r.columns["spacegroup_symbol"] for r in rows} - {None}),
        ),
        _equal_text("_crystaldb_cod_id", cods, sorted({i for r in rows for i in cods(r)})[:20]),
        _releases(sorted({ref for r in rows for ref in r.releases} | {"other:1"})),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(
                _join, st.sampled_from(["AND", "OR"]), st.lists(inner, min_size=2, max_size=3)
            ),
            st.builds(_negate, inner),
        ),
        max_leaves=6,
    )


def _served(api: Api, text: str) -> list[int]:
    """Every id the server selects for a filter, following links.next."""
    response = api.client.get(
        f"{api.url}/optimade/v1/structures",
        params={"filter": text, "page_limit": 500, "response_fields": "nsites"},
    )
    ids: list[int] = []
    while True:
        assert response.status_code == 200, response.text
        body = checked(response.json())
        ids += [int(entry["id"]) for entry in body["data"]]
        if not body["links"].get("next"):
            assert body["meta"]["data_returned"] == len(ids)
            return ids
        response = api.client.get(body["links"]["next"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_filters_match_the_oracle(api: Api, data: st.DataObject) -> None:
    rows = sorted(api.rows.values(), key=lambda r: r.id)
    text, oracle = data.draw(filters(rows), label="filter")
    note(text)
    assert _served(api, text) == [r.id for r in rows if oracle(r)]
