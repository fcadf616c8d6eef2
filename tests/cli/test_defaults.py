"""Option defaults are the library's own: read from it, or (where torch is behind) equal."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer.main

from crystaldb.cli import app
from crystaldb.cli.common import default_of
from crystaldb.cli.networks import SUMMARIES
from crystaldb.core.graphs import parse_recipe
from crystaldb.core.network_hypers import CGCNNHypers, EdgeMPNNHypers, SchNetHypers, TrainingConfig
from crystaldb.core.soap import SoapHypers
from crystaldb.core.validate import DEFAULT_LIMITS
from crystaldb.jobs.kernels import DEFAULT_TILE
from crystaldb.jobs.networks import train_nn
from crystaldb.jobs.predict import PREDICT_BATCH
from crystaldb.workflows.reproduce import PAPER


def _default(*path: str) -> Any:
    """The default of the option (last in path) of a command, as the user sees it."""
    command: Any = typer.main.get_command(app)
    for name in path[:-1]:
        command = command.commands[name]
    return next(p.default for p in command.params if path[-1] in p.opts)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("ingest", "--max-sites"), DEFAULT_LIMITS.max_sites),
        (("ingest", "--min-distance"), DEFAULT_LIMITS.min_distance),
        (("ingest", "--symprec"), DEFAULT_LIMITS.symprec),
        (("kernel", "build", "--rc"), SoapHypers().cutoff),
        (("kernel", "build", "--n"), SoapHypers().n_max),
        (("kernel", "build", "--l"), SoapHypers().l_max),
        (("kernel", "build", "--sigma"), SoapHypers().gaussian_width),
        (("kernel", "build", "--tile"), DEFAULT_TILE),
        (("predict", "--batch-size"), PREDICT_BATCH),
        (("reproduce", "omdb-gap1", "--train"), PAPER.train),
        (("reproduce", "omdb-gap1", "--test"), PAPER.test),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_option_defaults_are_the_librarys(path: tuple[str, ...], expected: Any) -> None:
    assert _default(*path) == expected


@pytest.mark.parametrize("architecture", sorted(SUMMARIES))
def test_network_defaults_match_training_config_and_train_nn(architecture: str) -> None:
    """The train commands read TrainingConfig, and so does train_nn: one default, three places."""
    config = TrainingConfig()
    assert _default("train", architecture, "--epochs") == config.epochs
    assert _default("train", architecture, "--seed") == config.seed
    assert default_of(train_nn, "epochs") == config.epochs
    assert default_of(train_nn, "seed") == config.seed


def test_network_summaries_state_the_hyperparameter_defaults() -> None:
    schnet, cgcnn, mpnn = SchNetHypers(), CGCNNHypers(), EdgeMPNNHypers()
    assert (
        f"cutoff {schnet.cutoff:g} A, F = {schnet.features}, T = {schnet.interactions}) "
        f"on the {schnet.recipe} graphs" in SUMMARIES["schnet"]
    )
    assert (
        f"{cgcnn.neighbours} nearest neighbours within {cgcnn.max_radius:g} A, "
        f"{cgcnn.convolutions} convolutions) on the knn:{cgcnn.neighbours} graphs"
        in SUMMARIES["cgcnn"]
    )
    assert parse_recipe(f"knn:{cgcnn.neighbours}").name == cgcnn.recipe  # RMAX left at 8
    assert f"(T = {mpnn.interactions}) on the {mpnn.recipe} graphs" in SUMMARIES["mpnn"]


def test_the_command_line_starts_without_torch() -> None:
    """Defaults come from torch-free classes, so `crystaldb --help` does not pay for torch."""
    code = "import sys, crystaldb.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
