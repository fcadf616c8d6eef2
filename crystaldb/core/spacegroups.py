"""Space-group symbols as people write them, resolved to the one spelling crystaldb stores.

Ingest stores spglib's short international symbol of the standard setting of the type it
finds (``dataset.international``: ``P2_1/c``, ``Fd-3m``, ``R-3``), one spelling per space
group number. Users write ``P 21/c``, ``P21/c``, ``P 1 21/c 1``, ``P2(1)/c``, another
setting (``P 21/n``, ``P 1 1 21/b``), a full symbol (``P 2_1/b 2_1/c 2_1/a``) or a Hall
symbol (``-P 2ybc``). `space_group_number` reads all of those through the libraries' own
tables, never a table of ours: spglib's 530 tabulated settings (short and full symbols,
compared without spaces and underscores), then gemmi's symbol parser (other spellings,
settings, origin choices ``:1``/``:2``, axes ``:H``/``:R``, older names such as ``Cmca``),
then gemmi's Hall symbol reader for the settings gemmi tabulates. Text that reads both ways
is read as Hermann-Mauguin: of the tabulated Hall symbols only ``C 2``, ``P 3 2``, ``P 4 2``
and ``P 6 2`` are also (lenient) names, of other types; write their settings by name instead.

What a symbol selects: its space-group *type* (its number). Stored structures carry the
standard setting of their type, whatever setting their source file used, so
``spacegroup_symbol = "P 21/n"`` selects exactly what ``spacegroup = 14`` selects (stored as
``P2_1/c``); no filter can select structures by the setting of their original file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

import gemmi
import spglib

HALL_NUMBERS = range(1, 531)  # spglib's tabulated settings (Hall numbers 1-530)
MAX_SYMBOL_LENGTH = 64  # longer text is no symbol: do not hand it to the parsers
_PARENTHESISED_SCREW = re.compile(r"(\d)\((\d)\)")  # 2(1) -> 21, as old CIFs write it

# The tables below are functools.cache'd rather than kept in an Lru: each is a function of no
# argument (one entry, so no bound is needed), pure, and returns a read-only mapping; two
# threads racing on the first call both build the same table and nothing breaks.


@cache
def stored_symbols() -> Mapping[int, str]:
    """Number -> the stored spelling: spglib's short symbol of its first (standard) setting."""
    symbols: dict[int, str] = {}
    for hall_number in HALL_NUMBERS:
        group = spglib.get_spacegroup_type(hall_number)
        if group is not None:
            symbols.setdefault(int(group.number), str(group.international_short))
    return MappingProxyType(symbols)


@cache
def _numbers_of_stored() -> Mapping[str, int]:
    """The stored spelling -> number (one spelling per number, so the inverse is exact)."""
    return MappingProxyType({symbol: number for number, symbol in stored_symbols().items()})


@cache
def _spglib_names() -> Mapping[str, int]:
    """spglib's short and full symbols of every tabulated setting, squashed -> number."""
    names: dict[str, int] = {}
    for hall_number in HALL_NUMBERS:
        group = spglib.get_spacegroup_type(hall_number)
        if group is not None:
            for name in (group.international_short, group.international_full):
                names[_squash(str(name))] = int(group.number)
    return MappingProxyType(names)


def _squash(symbol: str) -> str:
    """The symbol without spaces and subscript underscores (`P 1 2_1/c 1` -> `P121/c1`)."""
    return "".join(symbol.split()).replace("_", "")


def stored_symbol(number: int) -> str:
    """How the symbol of space group `number` (1-230) is stored, e.g. 14 -> P2_1/c."""
    return stored_symbols()[number]


def number_of_stored(symbol: str) -> int:
    """The number of a symbol in its stored spelling (KeyError for any other text)."""
    return _numbers_of_stored()[symbol]


def space_group_number(symbol: str) -> int | None:
    """The space-group type a written symbol names, in any tabulated setting; None if unknown."""
    text = unicodedata.normalize("NFKC", symbol).strip()  # P2₁/c -> P21/c
    if not (text.isascii() and text.isprintable()) or len(text) > MAX_SYMBOL_LENGTH:
        return None  # gemmi's C++ would read up to a NUL, and refuses lone surrogates
    if not text or text.isdigit():
        return None  # gemmi would read "14" as a number: a symbol starts with a letter
    written = _PARENTHESISED_SCREW.sub(r"\1\2", text)
    number = _spglib_names().get(_squash(written))
    return number or _gemmi_name(written.replace("_", "")) or _gemmi_hall(text)


def _gemmi_name(symbol: str) -> int | None:
    """gemmi's reading of a Hermann-Mauguin symbol, in any of its settings."""
    try:
        group = gemmi.find_spacegroup_by_name(symbol)
    except (RuntimeError, ValueError):
        return None
    return None if group is None else int(group.number)


def _gemmi_hall(symbol: str) -> int | None:
    """The type of a Hall symbol (`-P 2ybc`), for the settings gemmi tabulates."""
    try:
        group = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(symbol))
    except (RuntimeError, ValueError):
        return None
    return None if group is None else int(group.number)
