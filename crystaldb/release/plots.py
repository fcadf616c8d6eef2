"""The descriptive figures of a release (labels, elements, space groups), byte-identical per run.

Like the descriptive figure of the OMDB-GAP1 paper: a histogram of the labels, the number of
structures containing each element and the most common space groups. Figures are drawn with
matplotlib's Agg canvas directly (no pyplot, so no global figure state and no GUI backend),
under matplotlib's default style whatever the user's matplotlibrc says, at a fixed size and
dpi. Agg's PNGs carry no time; the only variable text chunk is ``Software`` (the matplotlib
version), which is dropped, so the same release gives the same bytes on every run.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from crystaldb.core.release_data import (
    LabelStatistics,
    ReleaseData,
    element_counts,
    label_statistics,
    labels_of,
    spacegroup_counts,
)

ELEMENTS_PNG = "elements.png"
SPACEGROUPS_PNG = "spacegroups.png"
TOP = 30  # bars in the element and space-group charts
BINS = 50
FIGSIZE = (9.0, 5.0)  # inches
DPI = 100
PNG_METADATA: dict[str, str | None] = {"Software": None}  # no version string in the file
COLOR = "#3b6ea8"


def histogram_name(data: ReleaseData) -> str:
    """band_gap_histogram.png for band gaps; the label property names the file."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", data.label_property or "label")
    return f"{stem}_histogram.png"


def write_plots(data: ReleaseData, folder: Path) -> list[Path]:
    """Draw every figure the release has data for into `folder`; return the files written."""
    written: list[Path] = []
    with matplotlib.style.context("default"):
        labels = labels_of(data)
        stats = label_statistics(labels)
        if stats is not None:
            path = folder / histogram_name(data)
            _save(_histogram(data, labels, stats), path)
            written.append(path)
        path = folder / ELEMENTS_PNG
        _save(_elements(data), path)
        written.append(path)
        if any(m.spacegroup_number is not None for m in data.members):
            path = folder / SPACEGROUPS_PNG
            _save(_spacegroups(data), path)
            written.append(path)
    return written


def _new_axes(bottom: float = 0.11) -> tuple[Figure, Axes]:
    """A figure of the fixed size on its own Agg canvas, fixed margins (a layout engine costs)."""
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.87, bottom=bottom)
    axes = figure.add_subplot()
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of structures
    return figure, axes


def _histogram(data: ReleaseData, labels: list[float], stats: LabelStatistics) -> Figure:
    """Label histogram with the mean and median marked and the statistics in the title."""
    figure, axes = _new_axes()
    unit = f" ({data.label_unit})" if data.label_unit else ""
    name = data.label_property or "label"
    axes.hist(labels, bins=BINS, color=COLOR, edgecolor="white", linewidth=0.5)
    axes.axvline(stats.mean, color="#c0392b", label=f"mean {stats.mean:.3f}")
    axes.axvline(stats.median, color="#27ae60", linestyle="--", label=f"median {stats.median:.3f}")
    axes.plot([], [], " ", label=f"std {stats.std:.3f}")
    axes.plot([], [], " ", label=f"exact zeros {stats.zeros}")
    axes.legend(loc="upper right")
    axes.set_xlabel(f"{name}{unit}")
    axes.set_ylabel("structures")
    axes.set_title(
        f"{data.name} {data.version}: {name} of {stats.count} structures\n"
        f"mean {stats.mean:.3f}, median {stats.median:.3f}, std {stats.std:.3f}{unit}"
    )
    return figure


def _bars(title: str, xlabel: str, items: list[tuple[str, int]], rotate: bool) -> Figure:
    """A bar chart of the first TOP (name, count) items."""
    figure, axes = _new_axes(bottom=0.3 if rotate else 0.11)
    shown = items[:TOP]
    names = [name for name, _ in shown]
    axes.bar(range(len(shown)), [n for _, n in shown], color=COLOR)
    axes.set_xticks(range(len(shown)), names, rotation=90 if rotate else 0)
    axes.set_xlim(-0.6, max(len(shown), 1) - 0.4)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("structures")
    axes.set_title(title)
    return figure


def _elements(data: ReleaseData) -> Figure:
    """How many structures contain each element, top 30."""
    counts = element_counts(data)
    title = (
        f"{data.name} {data.version}: structures containing each element"
        f" (top {min(TOP, len(counts))} of {len(counts)} elements, {len(data.members)} structures)"
    )
    return _bars(title, "element", counts, rotate=False)


def _spacegroups(data: ReleaseData) -> Figure:
    """The most common space groups, top 30."""
    counts = spacegroup_counts(data)
    title = (
        f"{data.name} {data.version}: most common space groups"
        f" (top {min(TOP, len(counts))} of {len(counts)})"
    )
    return _bars(title, "space group", counts, rotate=True)


def _save(figure: Figure, path: Path) -> None:
    """PNG at the fixed dpi without the version text chunk."""
    figure.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA)
