"""Figures of model quality, drawn off-screen as PNG bytes for the artifact store."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def learning_curve_png(curve: list[dict[str, float]], baseline: float, name: str) -> bytes:
    """Test MAE against training size on log axes, with the median baseline: a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=100)
    sizes = [p["train"] for p in curve]
    axes.loglog(sizes, [p["test_mae"] for p in curve], "o-", label=name)
    axes.axhline(baseline, color="grey", linestyle="--", label="predict the training median")
    axes.set_xlabel("training structures")
    axes.set_ylabel("test MAE (eV)")
    axes.set_title("Learning curve")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def learning_curves_png(
    curves: dict[str, list[tuple[int, float]]], baseline: float, title: str
) -> bytes:
    """Several models' test MAE against training size on one pair of log axes: a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.2), dpi=100)
    for name, curve in curves.items():
        axes.loglog([n for n, _ in curve], [mae for _, mae in curve], "o-", label=name)
    axes.axhline(baseline, color="grey", linestyle="--", label="predict the training median")
    sizes = {n for curve in curves.values() for n, _ in curve}
    return _plain_log_png(figure, axes, sizes, "training structures", title)


def band_curves_png(curves: dict[str, list[tuple[int, float, float]]], title: str) -> bytes:
    """Mean test MAE against labelled structures with a band of one sd, log-log: a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.2), dpi=100)
    for name, points in curves.items():
        sizes, mean, sd = (np.array(column, dtype=float) for column in zip(*points, strict=True))
        (line,) = axes.loglog(sizes, mean, "o-", label=name)
        low = np.maximum(mean - sd, mean * 1e-3)  # a log axis cannot show zero or below
        axes.fill_between(sizes, low, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
    every = sorted({n for points in curves.values() for n, _, _ in points})
    ticks = set(every[:: max(1, len(every) // 6)]) | {every[-1]}  # a log axis crowds them
    return _plain_log_png(figure, axes, ticks, "labelled structures", title)


def _plain_log_png(figure: Any, axes: Any, sizes: set[int], xlabel: str, title: str) -> bytes:
    """Plain numbers, not 10^x, on short log ranges; labels, legend; the figure as PNG bytes."""
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter, ScalarFormatter

    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xticks(sorted(sizes))
    axes.set_xlabel(xlabel)
    axes.set_ylabel("test MAE (eV)")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
