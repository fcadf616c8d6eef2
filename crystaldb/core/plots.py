"""Figures of model quality, drawn off-screen as PNG bytes for the artifact store."""

from __future__ import annotations

import io


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
    from matplotlib.ticker import FormatStrFormatter, NullFormatter, ScalarFormatter

    figure, axes = plt.subplots(figsize=(6, 4.2), dpi=100)
    for name, curve in curves.items():
        axes.loglog([n for n, _ in curve], [mae for _, mae in curve], "o-", label=name)
    axes.axhline(baseline, color="grey", linestyle="--", label="predict the training median")
    for axis in (axes.xaxis, axes.yaxis):  # plain numbers, not 10^x, on short log ranges
        axis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xticks(sorted({n for curve in curves.values() for n, _ in curve}))
    axes.set_xlabel("training structures")
    axes.set_ylabel("test MAE (eV)")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
