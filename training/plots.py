"""Small PNGs of training curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt

Panel = dict[str, list[float]]  # label -> one value per epoch (or per logged step)


def curves_png(title: str, panels: dict[str, Panel], xlabel: str = "epoch", logy: bool = False) -> bytes:
    """Side-by-side panels, one line per named series; returns PNG bytes (a few tens of kB)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(max(8, 4 * len(panels)), 3.6), dpi=80, squeeze=False)
    try:
        for ax, (panel_title, series) in zip(axes[0], panels.items(), strict=True):
            for label, values in series.items():
                ax.plot(range(1, len(values) + 1), values, label=label)
            ax.set_title(panel_title, fontsize="medium")
            ax.set_xlabel(xlabel)
            if logy:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            outside = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if len(panels) == 1 else {}
            ax.legend(fontsize="small", **outside)
        fig.suptitle(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)
