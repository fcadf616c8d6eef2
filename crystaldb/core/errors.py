"""Errors a user can act on: the CLI prints their message as one line, never a traceback."""


class CrystaldbError(Exception):
    """Base class: the message names the setting, file or argument at fault."""


class ConfigError(CrystaldbError):
    """A setting is missing, malformed or contradictory."""


class DatabaseUnavailable(CrystaldbError):
    """The configured PostgreSQL server cannot be reached or refused the connection."""


class SchemaOutOfDate(CrystaldbError):
    """The database schema is behind the code: `crystaldb db upgrade` fixes it."""


class ClusterUnavailable(CrystaldbError):
    """The configured Dask scheduler cannot be reached."""


class ArtifactUnavailable(CrystaldbError):
    """A kernel, descriptor set or model file cannot be read at the URI its row recorded."""
