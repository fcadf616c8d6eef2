"""Settings: environment, config file, defaults, and one clear line for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystaldb.core.errors import ConfigError
from crystaldb.platform.settings import load_settings


def test_defaults_use_the_embedded_server_and_a_local_store(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.database is None
    assert settings.dask_scheduler is None
    assert settings.store_location == str(tmp_path / "store")


def test_database_url_from_the_environment_is_pinned_to_psycopg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRYSTALDB_DATABASE_URL", "postgresql://alice:secret@db.example:6543/mat")
    url = load_settings().database
    assert url is not None
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.password) == ("db.example", 6543, "mat", "secret")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mysql://root@localhost/test", "is not a PostgreSQL URL"),
        ("sqlite:///crystal.db", "is not a PostgreSQL URL"),
        ("not a url at all", "is not a database URL"),
        ("postgresql://postgres@localhost:5432", "names no database"),
    ],
)
def test_bad_database_url_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv("CRYSTALDB_DATABASE_URL", raw)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("CRYSTALDB_DATABASE_URL: ")
    assert expected in message
    assert "\n" not in message


def test_password_never_appears_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYSTALDB_DATABASE_URL", "mysql://root:hunter2@localhost/test")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_config_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "crystaldb.toml"
    config.write_text('dask_workers = 6\nlog_level = "info"\nstore_url = "memory://artifacts"\n')
    monkeypatch.setenv("CRYSTALDB_CONFIG", str(config))
    monkeypatch.setenv("CRYSTALDB_DASK_WORKERS", "3")
    settings = load_settings()
    assert settings.dask_workers == 3  # environment beats file
    assert settings.log_level == "INFO"
    assert settings.store_location == "memory://artifacts"


def test_default_config_file_location_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_home = tmp_path / "xdg"
    (config_home / "crystaldb").mkdir(parents=True)
    (config_home / "crystaldb" / "config.toml").write_text("dask_workers = 5\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    assert load_settings().dask_workers == 5


def test_unknown_key_in_config_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "crystaldb.toml"
    config.write_text("dask_wokers = 6\n")
    monkeypatch.setenv("CRYSTALDB_CONFIG", str(config))
    with pytest.raises(ConfigError, match="unknown setting 'dask_wokers'"):
        load_settings()


def test_config_variable_pointing_nowhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYSTALDB_CONFIG", "/nonexistent/crystaldb.toml")
    with pytest.raises(ConfigError, match=r"CRYSTALDB_CONFIG=/nonexistent/crystaldb.toml: no such"):
        load_settings()


def test_config_file_that_does_not_parse_names_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("dask_workers = = 6\n")
    monkeypatch.setenv("CRYSTALDB_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"), ("scheduler:8786", "tcp://scheduler:8786")],
)
def test_scheduler_address_is_normalised(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: str
) -> None:
    monkeypatch.setenv("CRYSTALDB_DASK_SCHEDULER", raw)
    assert load_settings().dask_scheduler == expected


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CRYSTALDB_DASK_SCHEDULER", "http://host", "CRYSTALDB_DASK_SCHEDULER:"),
        ("CRYSTALDB_DASK_WORKERS", "0", "CRYSTALDB_DASK_WORKERS:"),
        ("CRYSTALDB_DASK_WORKERS", "many", "CRYSTALDB_DASK_WORKERS:"),
        ("CRYSTALDB_LOG_LEVEL", "loud", "CRYSTALDB_LOG_LEVEL:"),
    ],
)
def test_other_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=expected):
        load_settings()
