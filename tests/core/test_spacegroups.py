"""Space-group symbols as written, resolved through gemmi's and spglib's own tables."""

from __future__ import annotations

import gemmi
import pytest
import spglib

from crystaldb.core.spacegroups import (
    HALL_NUMBERS,
    number_of_stored,
    space_group_number,
    stored_symbol,
    stored_symbols,
)


def test_one_stored_spelling_per_space_group_type() -> None:
    """230 types, each spelled once, as spglib's standard setting spells it."""
    symbols = stored_symbols()
    assert sorted(symbols) == list(range(1, 231))
    assert len(set(symbols.values())) == 230
    assert (stored_symbol(14), stored_symbol(2), stored_symbol(227)) == ("P2_1/c", "P-1", "Fd-3m")
    assert all(number_of_stored(symbol) == number for number, symbol in symbols.items())


def _hall_type(hall: str, number: int) -> int:
    """A Hall symbol's type, unless gemmi also reads it as a name, which wins ("P 4 2": P4_2)."""
    as_name = gemmi.find_spacegroup_by_name(hall)
    return number if as_name is None else int(as_name.number)


def test_every_spglib_setting_resolves_to_its_type() -> None:
    """Short, full (with or without underscores and spaces) and Hall symbols of all 530."""
    for hall_number in HALL_NUMBERS:
        group = spglib.get_spacegroup_type(hall_number)
        assert group is not None
        full = str(group.international_full)
        names = (group.international_short, full, full.replace("_", ""), full.replace(" ", ""))
        for written in names:
            assert space_group_number(str(written)) == group.number, (hall_number, written)
        hall = str(group.hall_symbol)
        assert space_group_number(hall) == _hall_type(hall, group.number), (hall_number, hall)


def test_every_gemmi_setting_resolves_to_its_type() -> None:
    """gemmi's 500-odd settings, origin choices and axes, by name, extended name and Hall."""
    entries = list(gemmi.spacegroup_table())
    assert len(entries) > 530
    for entry in entries:
        for written in (entry.hm, entry.xhm(), entry.hm.replace(" ", "")):
            assert space_group_number(written) == entry.number, (entry.xhm(), written)
        assert space_group_number(entry.hall) == _hall_type(entry.hall, entry.number)


def test_hall_symbols_that_read_as_names_are_few() -> None:
    """Only a handful of tabulated Hall symbols are also Hermann-Mauguin text (as documented)."""
    ambiguous = {
        entry.hall
        for entry in gemmi.spacegroup_table()
        if _hall_type(entry.hall, entry.number) != entry.number
    }
    assert ambiguous == {"C 2", "P 3 2", "P 4 2", "P 6 2"}


@pytest.mark.parametrize(
    "written",
    [
        "P2_1/c",
        "P21/c",
        "P 21/c",
        "  P 21/c\t",
        "p 21/c",
        "P 1 21/c 1",
        "P 1 2_1/c 1",
        "P2(1)/c",
        "P2₁/c",
        "P 21/n",
        "P 1 21/a 1",
        "P 1 1 21/b",
        "-P 2ybc",
        "-P 2yn",
    ],
)
def test_spellings_of_space_group_14(written: str) -> None:
    """What users write for P2_1/c, in the standard and in other settings."""
    assert space_group_number(written) == 14


@pytest.mark.parametrize(
    "written",
    [
        "",
        "   ",
        "14",
        "P 99",
        "P2_1/c\x00",
        "\x00",
        "\ud800",
        "P 21/c\ud800",
        "Q 21/c",
        "x" * 10_000,
    ],
)
def test_what_no_table_knows_is_none(written: str) -> None:
    """Numbers, unknown symbols, NUL, lone surrogates and long text: None, never an exception."""
    assert space_group_number(written) is None
