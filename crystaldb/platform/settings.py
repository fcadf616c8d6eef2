"""The single settings object: environment variables, then an optional TOML file, then defaults."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from platformdirs import user_config_dir, user_data_dir
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from crystaldb.core.errors import ConfigError

ENV_PREFIX = "CRYSTALDB_"
CONFIG_ENV = "CRYSTALDB_CONFIG"


def default_config_file() -> Path:
    """Where the optional config file is looked for when CRYSTALDB_CONFIG is unset."""
    return Path(user_config_dir("crystaldb")) / "config.toml"


def parse_database_url(raw: str) -> URL:
    """Accept any PostgreSQL URL and pin the psycopg 3 driver, refusing everything else."""
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ValueError(
            f"{raw!r} is not a database URL (expected postgresql://user@host:5432/dbname)"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise ValueError(
            f"{url.render_as_string(hide_password=True)!r} is not a PostgreSQL URL: "
            "crystaldb needs PostgreSQL (postgresql://user@host:5432/dbname)"
        )
    if not url.database:
        raise ValueError(
            f"{url.render_as_string(hide_password=True)!r} names no database "
            "(expected postgresql://user@host:5432/dbname)"
        )
    return url.set(drivername="postgresql+psycopg")


def _env_list(value: Any, what: str, items: Callable[[str], list[str]]) -> Any:
    """A list setting as the environment gives it: a JSON list, or plain text split by `items`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a JSON list of {what}") from None
    return items(text)


class Settings(BaseSettings):
    """Everything configurable, each field settable as CRYSTALDB_<FIELD> or in config.toml."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset means the embedded server under data_dir"
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir("crystaldb")),
        description="Embedded database, local artifact store and Dask scratch space",
    )
    dask_scheduler: str | None = Field(
        None, description="Dask scheduler address (tcp://host:8786); unset means a local cluster"
    )
    dask_workers: int = Field(2, ge=1, le=512, description="Worker processes of the local cluster")
    dask_threads_per_worker: int = Field(1, ge=1, le=64, description="Threads per local worker")
    dask_cluster: Literal["local", "slurm", "address"] | None = Field(
        None,
        description="Where jobs run: local (worker processes on this machine), slurm (worker"
        " jobs submitted through dask-jobqueue) or address (CRYSTALDB_DASK_SCHEDULER); unset:"
        " address when CRYSTALDB_DASK_SCHEDULER is set, else local",
    )
    slurm_queue: str | None = Field(None, description="SLURM partition of the worker jobs (-p)")
    slurm_account: str | None = Field(None, description="SLURM account charged for them (-A)")
    slurm_cores: int = Field(
        4, ge=1, le=1024, description="Cores per SLURM worker job (--cpus-per-task)"
    )
    slurm_processes: int = Field(
        1, ge=1, le=1024, description="Dask worker processes per SLURM job (they share its cores)"
    )
    slurm_memory: str = Field("16GB", description="Memory per SLURM worker job (--mem)")
    slurm_walltime: str = Field("01:00:00", description="Time limit of each worker job (-t)")
    slurm_jobs: int = Field(1, ge=1, le=4096, description="Worker jobs submitted per crystaldb job")
    slurm_job_extra_directives: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More #SBATCH directives, comma-separated or a JSON list, e.g."
        ' ["--gres=gpu:1", "--constraint=a100"]',
    )
    slurm_job_script_prologue: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Shell lines run before the worker starts, e.g. module loads or"
        " 'source ~/crystaldb/.venv/bin/activate' (JSON list, or one line)",
    )
    slurm_worker_resources: str | None = Field(
        None, description="Dask resources each SLURM worker declares, e.g. GPU=1 for GPU jobs"
    )
    slurm_interface: str | None = Field(
        None, description="Network interface the scheduler and workers use (e.g. ib0)"
    )
    slurm_python: str | None = Field(
        None, description="Python on the compute nodes; unset: the client's own executable"
    )
    slurm_start_timeout: float = Field(
        3600, gt=0, description="Seconds to wait for the first SLURM worker to join"
    )
    pg_bindir: Path | None = Field(
        None,
        description="Folder of psql, pg_dump and pg_restore for `crystaldb db`; unset: the"
        " server's major version is looked up (/usr/lib/postgresql/N/bin, the embedded"
        " server's own, PATH)",
    )
    store_url: str | None = Field(
        None,
        description="Artifact store: a directory or any fsspec URL (s3://bucket/prefix for an"
        " S3-compatible object store); unset: data_dir/store",
    )
    store_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for the store URL's protocol, as a JSON object, e.g."
        ' {"endpoint_url": "http://10.0.0.5:9000"} for s3://; unset: s3fs reads'
        " AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    )
    log_level: str = Field("WARNING", description="Python logging level")
    api_timeout: float = Field(
        5.0, gt=0, le=3600, description="Seconds a GraphQL request may run before it is cancelled"
    )
    api_max_cost: int = Field(
        100_000, ge=1, description="Largest estimated cost of a GraphQL query that is run"
    )
    api_max_body: int = Field(
        2 << 20,
        ge=1024,
        description="Largest request body in bytes (JSON or a query string); larger ones get 413",
    )
    api_max_upload: int = Field(
        8 << 20,
        ge=1024,
        description="Largest multipart upload body in bytes, read only with a live API token",
    )
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins whose pages may call the API from a browser (CORS), comma-"
        "separated or a JSON list; '*' allows any; default: none",
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return parse_database_url(value).render_as_string(hide_password=False)

    @field_validator("dask_scheduler")
    @classmethod
    def _check_scheduler(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme, sep, rest = value.partition("://")
        if not sep:
            scheme, rest = "tcp", value
        if scheme not in {"tcp", "tls", "ucx", "inproc", "ws", "wss"} or ":" not in rest:
            raise ValueError(f"{value!r} is not a Dask scheduler address (tcp://host:8786)")
        return f"{scheme}://{rest}"

    @field_validator("slurm_job_extra_directives", "slurm_job_script_prologue", mode="before")
    @classmethod
    def _split_lines(cls, value: Any) -> Any:
        return _env_list(value, "strings", lambda text: [text] if text else [])

    @field_validator("slurm_worker_resources")
    @classmethod
    def _check_resources(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for part in value.split():
            name, sep, amount = part.partition("=")
            try:
                float(amount)
            except ValueError:
                sep = ""
            if not (name and sep):
                raise ValueError(f"{value!r} is not a list of Dask resources (GPU=1 MEMORY=8e9)")
        return value.strip()

    @field_validator("dask_cluster")
    @classmethod
    def _check_cluster(cls, value: str | None, info: ValidationInfo) -> str | None:
        scheduler = info.data.get("dask_scheduler")
        if value == "address" and not scheduler:
            raise ValueError("address needs CRYSTALDB_DASK_SCHEDULER (tcp://host:8786)")
        if value in ("local", "slurm") and scheduler:
            raise ValueError(
                f"{value} starts its own scheduler: unset CRYSTALDB_DASK_SCHEDULER, or set"
                " CRYSTALDB_DASK_CLUSTER=address to use it"
            )
        return value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _env_list(
            value, "origins", lambda text: [p.strip() for p in text.split(",") if p.strip()]
        )

    @field_validator("api_cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not (
                origin.startswith(("http://", "https://")) and origin.count("/") == 2
            ):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path, or '*')"
                )
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"{value!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments win, then the environment, then the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = config_file_path()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def database(self) -> URL | None:
        """The configured server's URL, or None for the embedded default."""
        return make_url(self.database_url) if self.database_url else None

    @property
    def cluster_kind(self) -> str:
        """local, slurm or address: CRYSTALDB_DASK_CLUSTER, or what the scheduler implies."""
        return self.dask_cluster or ("address" if self.dask_scheduler else "local")

    @property
    def store_location(self) -> str:
        """The artifact store's root: the configured URL or a folder under data_dir."""
        return self.store_url or str(self.data_dir / "store")


def config_file_path() -> Path | None:
    """The config file in force, refusing a CRYSTALDB_CONFIG that points nowhere."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named}: no such file")
        return path
    default = default_config_file()
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one line per bad field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(err) for err in exc.errors())) from None
    except (OSError, ValueError) as exc:  # a TOML file that does not parse
        raise ConfigError(f"config file {config_file_path()}: {exc}") from None


def _describe(err: Any) -> str:
    """Name the field the way the user set it: the environment variable."""
    field = str(err["loc"][0]) if err["loc"] else "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown setting {field!r} in the config file"
    return f"{ENV_PREFIX}{field.upper()}: {message}"
