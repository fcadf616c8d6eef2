"""`crystaldb kernel`: build and list SOAP kernel matrices."""

from __future__ import annotations

import typer
from rich.table import Table

from crystaldb.cli.common import (
    console,
    current_database,
    default_of,
    selection,
    stage_progress,
)
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.embeddings import embed_kernel
from crystaldb.jobs.kernels import build_kernel, choose_landmarks, list_kernels
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.kernels import kernel_columns

app = typer.Typer(
    help="SOAP descriptors and kernel matrices (Zarr, tiled on Dask): build, list, embed.",
    no_args_is_help=True,
)


@app.command("build")
def kernel_build(
    release: str | None = typer.Option(None, "--release", help="NAME[:VERSION]: its members."),
    where: str | None = typer.Option(
        None, "--where", help=("Structures matching a filter (the fields: `crystaldb filters`).")
    ),
    everything: bool = typer.Option(False, "--all", help="Every structure in the database."),
    columns: str | None = typer.Option(
        None,
        "--columns-release",
        help="NAME[:VERSION]: a rectangle against this release's train split (for prediction).",
    ),
    landmarks: int | None = typer.Option(
        None,
        "--landmarks",
        help="M: a Nyström rectangle against M landmarks drawn from the train split of"
        " --columns-release, else of --release (for more than 50,000 training structures).",
    ),
    landmark_seed: int = typer.Option(
        default_of(choose_landmarks, "seed"), "--landmark-seed", help="Seed of the landmark draw."
    ),
    descriptor: str = typer.Option("soap", "--descriptor", help="Only soap for now."),
    rc: float = typer.Option(
        default_of(SoapHypers, "cutoff"), "--rc", help="SOAP cutoff radius (angstrom)."
    ),
    n: int = typer.Option(
        default_of(SoapHypers, "n_max"),
        "--n",
        help="Radial functions n_max (featomic max_radial = n - 1).",
    ),
    l_max: int = typer.Option(
        default_of(SoapHypers, "l_max"), "--l", help="Highest angular channel l_max."
    ),
    sigma: float = typer.Option(
        default_of(SoapHypers, "gaussian_width"), "--sigma", help="Gaussian width (angstrom)."
    ),
    zeta: float = typer.Option(
        default_of(build_kernel, "zeta"), "--zeta", help="Kernel exponent (1: the paper's)."
    ),
    tile: int = typer.Option(
        default_of(build_kernel, "tile"), "--tile", help="Rows and columns per tile and Zarr chunk."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
) -> None:
    """The average SOAP kernel as a tiled Zarr array; re-running resumes an interrupted build."""
    if descriptor != "soap":
        raise typer.BadParameter(
            f"{descriptor!r}: only soap is available", param_hint="--descriptor"
        )
    hypers = SoapHypers(cutoff=rc, n_max=n, l_max=l_max, gaussian_width=sigma)
    settings = load_settings()
    db = current_database(settings)
    rows = selection(db, release, where, everything, "the kernel's rows")
    source = (columns or release) if landmarks is not None else columns
    if landmarks is not None and source is None:
        raise typer.BadParameter(
            "landmarks are drawn from a release's labelled train split: give --release"
            " (or --columns-release)",
            param_hint="--landmarks",
        )
    cols = kernel_columns(db, source, landmarks, landmark_seed)
    chosen = cols.landmarks
    with stage_progress() as update:
        summary = build_kernel(
            db,
            settings,
            rows.structure_ids,
            cols.ids,
            hypers=hypers,
            zeta=zeta,
            tile=tile,
            workers=workers,
            on_progress=update,
            description=rows.description,
            landmarks=chosen.record if chosen else None,
        )
    against = (
        f"\n  columns: {landmarks} landmarks drawn (seed {landmark_seed}) from the train"
        f" split of {chosen.record['release']}"
        if chosen
        else ""
    )
    console.print(
        f"kernel {summary.kernel_id}: {summary.shape[0]} x {summary.shape[1]} "
        f"({rows.description}), {summary.tiles_computed} of {summary.tiles_total} tiles computed"
        f" by run {summary.run_id}{against}\n  {summary.array_uri}\n  sha256 {summary.checksum}"
    )


@app.command("list")
def kernel_list() -> None:
    """Every kernel: shape, hyperparameters, status and where its array is."""
    table = Table("id", "shape", "SOAP rc/n/l/sigma", "zeta", "tile", "status", "array")
    for kernel, hypers in list_kernels(current_database()):
        table.add_row(
            str(kernel.id),
            " x ".join(map(str, kernel.shape)),
            f"{hypers['cutoff']}/{hypers['n_max']}/{hypers['l_max']}/{hypers['gaussian_width']}",
            str(kernel.hyperparameters.get("zeta")),
            str(kernel.chunks[0]),
            kernel.status,
            kernel.array_uri,
        )
    console.print(table)


@app.command("embed")
def kernel_embed(
    kernel: int = typer.Option(..., "--kernel", help="ID of a complete square kernel."),
    method: str = typer.Option(
        default_of(embed_kernel, "method"), "--method", help="kpca: kernel PCA (for now)."
    ),
) -> None:
    """A 2D map of a square kernel's rows, stored for the web explorer's /map."""
    summary = embed_kernel(current_database(), kernel, method)
    console.print(
        f"embedding {summary.embedding_id}: {summary.points} points of kernel {kernel}"
        f" by {summary.method} (run {summary.run_id}); see /map?embedding={summary.embedding_id}"
    )
