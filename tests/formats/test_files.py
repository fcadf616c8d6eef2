"""File-level refusals, on inputs derived in tmp_path from real files: nothing ever raises."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from crystaldb.core.records import Rejection
from crystaldb.core.validate import DEFAULT_MAX_FILE_BYTES
from crystaldb.formats import payload as process
from crystaldb.formats.files import Payload
from crystaldb.formats.payload import parse_file, process_payload


def only_rejection(results: list, path: Path) -> Rejection:
    """The single file-level Rejection a broken file should produce, naming that file."""
    assert len(results) == 1, results
    (result,) = results
    assert isinstance(result, Rejection), result
    assert result.entry is None
    assert str(path) in result.message
    return result


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "1000054.cif"
    path.write_bytes(b"")
    assert only_rejection(parse_file(path), path).reason == "no_atoms"


def test_whitespace_only_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.cif"
    path.write_bytes(b"\n   \n\t\n")
    assert only_rejection(parse_file(path), path).reason == "no_atoms"


def test_binary_junk(tmp_path: Path, cod: Path) -> None:
    """A gzip-compressed CIF saved under a .cif name is binary, not text."""
    path = tmp_path / "1000054.cif"
    path.write_bytes(gzip.compress((cod / "1000054.cif").read_bytes()))
    rejection = only_rejection(parse_file(path), path)
    assert rejection.reason == "binary"
    assert rejection.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_nul_byte_in_text(tmp_path: Path, cod: Path) -> None:
    data = (cod / "1000054.cif").read_bytes()
    path = tmp_path / "nul.cif"
    path.write_bytes(data[:200] + b"\x00" + data[200:])
    rejection = only_rejection(parse_file(path), path)
    assert rejection.reason == "binary"
    assert "offset 200" in rejection.message


def test_not_utf8(tmp_path: Path, cod: Path) -> None:
    """A Latin-1 author name (0xFC for u-umlaut) in an otherwise valid CIF."""
    text = (cod / "1000054.cif").read_text()
    path = tmp_path / "latin1.cif"
    path.write_bytes(
        text.replace("data_1000054", "data_1000054\n# M\u00fcller", 1).encode("latin-1")
    )
    rejection = only_rejection(parse_file(path), path)
    assert rejection.reason == "not_utf8"
    assert "0xfc" in rejection.message


def test_real_cod_file_that_is_not_utf8(cod: Path) -> None:
    """COD 9005728 has a Windows-1252 apostrophe (0x92) in an author name."""
    path = cod / "9005728.cif"
    path.read_bytes().decode("cp1252")  # it is valid in another encoding, just not UTF-8
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    assert only_rejection(parse_file(path), path).reason == "not_utf8"


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path, cod: Path) -> None:
    path = tmp_path / "1000054.cif"
    path.write_bytes(b"\xef\xbb\xbf" + (cod / "1000054.cif").read_bytes())
    (result,) = parse_file(path)
    assert not isinstance(result, Rejection), result


def test_file_too_large(tmp_path: Path, cod: Path) -> None:
    """A real CIF padded with comment lines past 10 MiB is refused before it is read."""
    path = tmp_path / "1000054.cif"
    data = (cod / "1000054.cif").read_bytes()
    padding = b"# padding\n" * (DEFAULT_MAX_FILE_BYTES // 10 + 1)
    path.write_bytes(data + padding)
    assert path.stat().st_size > DEFAULT_MAX_FILE_BYTES
    rejection = only_rejection(parse_file(path), path)
    assert rejection.reason == "file_too_large"
    assert f"{DEFAULT_MAX_FILE_BYTES:,}" in rejection.message


def test_size_limit_is_configurable(tmp_path: Path, cod: Path) -> None:
    path = cod / "1000054.cif"
    size = path.stat().st_size
    assert only_rejection(parse_file(path, max_file_bytes=size - 1), path).reason == (
        "file_too_large"
    )
    assert not isinstance(parse_file(path, max_file_bytes=size)[0], Rejection)


def test_unsupported_suffix(tmp_path: Path, cod: Path) -> None:
    path = tmp_path / "1000054.pdb"
    path.write_bytes((cod / "1000054.cif").read_bytes())
    assert only_rejection(parse_file(path), path).reason == "unsupported_format"


def test_missing_file_is_a_rejection(tmp_path: Path) -> None:
    path = tmp_path / "absent.cif"
    assert only_rejection(parse_file(path), path).reason == "parse_error"


def test_sha256_is_the_hash_of_the_bytes(cod: Path) -> None:
    path = cod / "1000054.cif"
    (parsed,) = parse_file(path)
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["empty.cif", "empty.xyz", "POSCAR", "empty.vasp", "empty.json"])
@pytest.mark.parametrize("data", [b"", b" \n\t\n"], ids=["empty", "blank"])
def test_an_empty_file_is_refused_alike_in_every_format(name: str, data: bytes) -> None:
    """One check before any parser: no_atoms, "file is empty", whatever the suffix."""
    (rejection,) = process_payload(Payload(name, data))
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.message) == ("no_atoms", f"{name}: file is empty")
    assert rejection.sha256 == hashlib.sha256(data).hexdigest()


def test_an_unsupported_name_is_refused_naming_every_format_read(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a structure")
    rejection = only_rejection(parse_file(path), path)
    assert rejection.message == (
        f"{path}: not a structure file crystaldb reads"
        " (.cif, .xyz, .extxyz, .vasp, POSCAR, CONTCAR, .json)"
    )


def test_a_parser_that_raises_is_a_parse_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a format library raises is a refusal of that file, never the worker's end."""

    def broken(text: str, path: str, sha256: str | None, database: str | None) -> list:
        raise KeyError("lattice")

    monkeypatch.setattr(process, "parser_for", lambda name: broken)
    (rejection,) = process_payload(Payload("odd.json", b"{}"))
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.message) == ("parse_error", "odd.json: KeyError: 'lattice'")
