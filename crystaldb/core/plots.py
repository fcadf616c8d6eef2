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
