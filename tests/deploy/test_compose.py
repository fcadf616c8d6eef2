"""deploy/compose: the compose files are valid, and start the cluster the docs describe.

Validated by `docker compose config -q` where Docker Compose v2 is on the machine, and
always against the Compose Specification's own JSON schema (tests/data/deploy).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
FILES = [COMPOSE / "docker-compose.yml", COMPOSE / "docker-compose.gpu.yml"]
ENV_EXAMPLE = COMPOSE / ".env.example"
SCHEMA = ROOT / "tests" / "data" / "deploy" / "compose-spec.json"
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or a standalone `docker-compose` of version 2."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return [str(shutil.which(command[0])), *command[1:]]
    return None


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(_load(path))


def test_docker_compose_config_accepts_them() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 here (`docker compose` or `docker-compose`)")
    files = [arg for path in FILES for arg in ("-f", str(path))]
    result = subprocess.run(
        [*command, *files, "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    unset = subprocess.run(
        [*command, "-f", str(FILES[0]), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert unset.returncode != 0 and "set POSTGRES_PASSWORD in .env" in unset.stderr


def test_the_services_make_the_documented_cluster() -> None:
    compose = _load(FILES[0])
    services = compose["services"]
    assert set(services) >= {"postgres", "objectstore", "scheduler", "worker-cpu", "worker-gpu"}
    assert services["postgres"]["image"].startswith("postgres:15")
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on an unknown service {needed}"
    gpu, cpu = services["worker-gpu"]["command"], services["worker-cpu"]["command"]
    assert gpu[:3] == ["dask", "worker", "tcp://scheduler:8786"] and cpu[:3] == gpu[:3]
    assert gpu[gpu.index("--resources") + 1] == "GPU=1" and "--resources" not in cpu
    assert services["scheduler"]["command"][:2] == ["dask", "scheduler"]
    api = services["api"]["command"]
    assert api[:2] == ["crystaldb", "serve"] and "--workers" in api
    env = compose["x-crystaldb"]["environment"]
    assert env["CRYSTALDB_DASK_SCHEDULER"] == "tcp://scheduler:8786"
    assert env["CRYSTALDB_STORE_URL"].startswith("s3://")
    assert env["CRYSTALDB_DATABASE_URL"].startswith("postgresql://crystaldb:")
    # every crystaldb service runs the image the Dockerfile builds
    for name in ("migrate", "scheduler", "worker-cpu", "worker-gpu", "api"):
        assert services[name]["build"]["dockerfile"] == "deploy/compose/Dockerfile", name
    reserved = _load(FILES[1])["services"]["worker-gpu"]["deploy"]["resources"]
    assert reserved["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_every_required_variable_is_in_the_env_example() -> None:
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    text = "\n".join(path.read_text() for path in FILES)
    used = {m.group(1): m.group(2) for m in VARIABLE.finditer(text)}
    required = {name for name, kind in used.items() if kind in (None, ":?", "?")}
    assert required <= set(example), required - set(example)
    assert set(example) <= set(used), set(example) - set(used)


def test_the_dockerfile_installs_pinned_torch_before_the_package() -> None:
    text = (COMPOSE / "Dockerfile").read_text().replace("\\\n", " ")
    steps = [" ".join(line.split()) for line in text.splitlines() if line.startswith("RUN ")]
    torch = next(i for i, s in enumerate(steps) if "torch==2.13.0" in s)
    package = next(i for i, s in enumerate(steps) if s.endswith("pip install --no-cache-dir ."))
    assert torch < package
    assert any("postgresql-client-15" in s for s in steps)
