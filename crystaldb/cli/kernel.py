"""`crystaldb kernel`: build and list SOAP and MBTR kernel matrices."""

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
from crystaldb.core.descriptors import DESCRIPTORS, Hypers, label
from crystaldb.core.mbtr import MbtrHypers
from crystaldb.core.soap import SoapHypers
from crystaldb.jobs.embeddings import embed_kernel
from crystaldb.jobs.kernels import build_kernel, choose_landmarks, list_kernels
from crystaldb.platform.settings import load_settings
from crystaldb.workflows.kernels import kernel_columns

app = typer.Typer(
    help="SOAP or MBTR descriptors and kernel matrices (Zarr, tiled on Dask): build, list, embed.",
    no_args_is_help=True,
)


SOAP_OPTIONS = {"rc": "--rc", "n": "--n", "l_max": "--l", "sigma": "--sigma"}
MBTR_OPTIONS = {
    "grid_n": "--grid-n",
    "k1_sigma": "--k1-sigma",
    "k2_sigma": "--k2-sigma",
    "k3_sigma": "--k3-sigma",
    "scale": "--scale",
    "threshold": "--threshold",
}


def _mbtr_default(name: str) -> object:
    """MBTR's own default for one of its options."""
    return default_of(MbtrHypers, name)


@app.command("build")
def kernel_build(
    ctx: typer.Context,
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
    descriptor: str = typer.Option(
        "soap",
        "--descriptor",
        help="soap (featomic's average spectra) or mbtr (DScribe's MBTR, k = 1, 2, 3).",
    ),
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
    grid_n: int = typer.Option(
        _mbtr_default("grid_n"), "--grid-n", help="MBTR: grid points of each k-term."
    ),
    k1_sigma: float = typer.Option(
        _mbtr_default("k1_sigma"), "--k1-sigma", help="MBTR: Gaussian width, atomic numbers."
    ),
    k2_sigma: float = typer.Option(
        _mbtr_default("k2_sigma"), "--k2-sigma", help="MBTR: Gaussian width, 1/distance (1/A)."
    ),
    k3_sigma: float = typer.Option(
        _mbtr_default("k3_sigma"), "--k3-sigma", help="MBTR: Gaussian width, cosine of angles."
    ),
    scale: float = typer.Option(
        _mbtr_default("scale"), "--scale", help="MBTR: k = 2, 3 weighting exp(-s x), s in 1/A."
    ),
    threshold: float = typer.Option(
        _mbtr_default("threshold"), "--threshold", help="MBTR: weights below this are dropped."
    ),
    zeta: float = typer.Option(
        default_of(build_kernel, "zeta"), "--zeta", help="Kernel exponent (1: the paper's)."
    ),
    tile: int = typer.Option(
        default_of(build_kernel, "tile"), "--tile", help="Rows and columns per tile and Zarr chunk."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask workers."),
) -> None:
    """A SOAP or MBTR kernel as a tiled Zarr array; re-running resumes an interrupted build."""
    _refuse_other_options(ctx, descriptor)
    hypers: Hypers
    if descriptor == "mbtr":
        hypers = MbtrHypers(
            grid_n=grid_n,
            k1_sigma=k1_sigma,
            k2_sigma=k2_sigma,
            k3_sigma=k3_sigma,
            scale=scale,
            threshold=threshold,
        )
    else:
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
        f"\n  descriptor set {summary.descriptor_set_id}: {label(hypers.record())}"
    )


def _refuse_other_options(ctx: typer.Context, descriptor: str) -> None:
    """An unknown descriptor, or an option of the other one given, is named, not ignored."""
    if descriptor not in DESCRIPTORS:
        raise typer.BadParameter(
            f"{descriptor!r}: one of {', '.join(DESCRIPTORS)}", param_hint="--descriptor"
        )
    other = SOAP_OPTIONS if descriptor == "mbtr" else MBTR_OPTIONS
    sources = {name: ctx.get_parameter_source(name) for name in other}
    given = [
        option
        for name, option in other.items()
        if getattr(sources[name], "name", None) == "COMMANDLINE"  # typer vendors click's enum
    ]
    if given:
        raise typer.BadParameter(
            f"not an option of --descriptor {descriptor}: {', '.join(given)}",
            param_hint="--descriptor",
        )


@app.command("list")
def kernel_list() -> None:
    """Every kernel: shape, hyperparameters, status and where its array is."""
    table = Table(
        "id", "shape", "descriptor (SOAP rc/n/l/sigma)", "zeta", "tile", "status", "array"
    )
    for kernel, hypers in list_kernels(current_database()):
        table.add_row(
            str(kernel.id),
            " x ".join(map(str, kernel.shape)),
            label(hypers),
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
        default_of(embed_kernel, "method"),
        "--method",
        help="kpca: kernel PCA | tsne: t-SNE on the kernel distance sqrt(Kii + Kjj - 2 Kij).",
    ),
    perplexity: float = typer.Option(
        default_of(embed_kernel, "perplexity"),
        "--perplexity",
        help="t-SNE's perplexity (neighbours), below the kernel's rows.",
    ),
    seed: int = typer.Option(
        default_of(embed_kernel, "seed"), "--seed", help="t-SNE's random start."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local Dask workers (t-SNE runs on one)."
    ),
) -> None:
    """A 2D map of a square kernel's rows, stored for the web explorer's /map."""
    settings = load_settings()
    db = current_database(settings)
    if method == "tsne":
        with console.status(f"t-SNE of kernel {kernel} on a Dask worker..."):
            summary = embed_kernel(db, kernel, method, settings, perplexity, seed, workers)
    else:
        summary = embed_kernel(db, kernel, method, settings)
    how = (
        f"perplexity {summary.parameters['perplexity']:g}, seed {summary.parameters['seed']},"
        f" {summary.parameters['library']}; "
        if method == "tsne"
        else ""
    )
    console.print(
        f"embedding {summary.embedding_id}: {summary.points} points of kernel {kernel}"
        f" by {summary.method} ({how}run {summary.run_id});"
        f" see /map?embedding={summary.embedding_id}",
        soft_wrap=True,
    )
