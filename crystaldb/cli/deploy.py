"""`crystaldb deploy`: what the deployment files need from the package (the SLURM job script)."""

from __future__ import annotations

import typer

from crystaldb.core.errors import ConfigError
from crystaldb.platform.cluster import slurm_job_script
from crystaldb.platform.settings import load_settings

app = typer.Typer(help="Deployment helpers: the SLURM worker job script.", no_args_is_help=True)


@app.command("slurm-script")
def slurm_script(
    scheduler: str = typer.Option(
        None,
        "--scheduler",
        help="Address the workers join (tcp://host:8786); default: a scheduler started here"
        " for the occasion, exactly as a job with CRYSTALDB_DASK_CLUSTER=slurm would.",
    ),
) -> None:
    """Print the batch script each SLURM worker job runs, from the CRYSTALDB_SLURM_* settings.

    Nothing is submitted. With --scheduler the script can be given to sbatch by hand, to
    add workers to a scheduler that runs elsewhere.
    """
    settings = load_settings()
    if scheduler is None:
        print(slurm_job_script(settings), end="")
        return
    try:
        address = load_settings(dask_scheduler=scheduler, dask_cluster="address").dask_scheduler
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("CRYSTALDB_DASK_SCHEDULER", "--scheduler")) from None
    print(slurm_job_script(settings, address), end="")
