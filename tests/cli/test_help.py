"""Every command answers --help, as a user runs it."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from crystaldb.cli import app
from tests.conftest import run_cli


def _all_command_paths() -> list[list[str]]:
    """Every subcommand, nested groups included."""
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_subcommand_has_help(path: list[str]) -> None:
    """The app's own parser in this process: a child interpreter per command costs ~2 s."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and path[-1] in result.output


@pytest.mark.parametrize("path", [[], ["label", "xtb"]], ids=lambda p: " ".join(p) or "root")
def test_help_from_the_installed_entry_point(path: list[str]) -> None:
    result = run_cli(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_filters_prints_the_field_table_the_parser_uses() -> None:
    """`crystaldb filters` is the reference --where points to: every field, from the table."""
    from crystaldb.query.fields import FIELDS, describe_fields

    result = run_cli("filters")
    assert result.returncode == 0, result.stderr
    assert result.stdout == describe_fields() + "\n"
    lines = result.stdout.splitlines()
    listed = {line.split()[0].split("[")[0] for line in lines if not line.startswith(" ")}
    assert listed == set(FIELDS)
