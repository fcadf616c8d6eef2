"""The OPTIMADE JSON Lines writer's own conventions (the export as a whole: tests/release)."""

from __future__ import annotations

from crystaldb.formats.optimade_jsonl import optimade_formula


def test_optimade_formula_convention() -> None:
    assert optimade_formula(["O", "Si", "O"]) == "O2Si"
    assert optimade_formula(["Na", "Cl"] * 4) == "ClNa"
    assert optimade_formula(["H"] * 4 + ["C"] * 2) == "CH2"
