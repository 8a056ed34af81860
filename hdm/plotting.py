"""Plots: 1-D functions with quantile bands (more maps and spectra come with the
downscaling pipeline). Matplotlib with the non-interactive Agg backend; every function
writes a PNG atomically and returns its path."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_functions(
    path: str | Path,
    x: np.ndarray,
    generated: np.ndarray,
    real: np.ndarray,
    *,
    title: str = "",
    x_label: str = "x",
    y_label: str = "y",
    n_show: int = 12,
) -> Path:
    """Left: a few generated and real curves. Right: mean and 5–95% bands of both.

    ``generated`` and ``real`` are (n_curves, n_points) on ``x``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for row in real[:n_show]:
        axes[0].plot(x, row, color="0.55", lw=0.8)
    for row in generated[:n_show]:
        axes[0].plot(x, row, color="tab:blue", lw=0.8, alpha=0.8)
    axes[0].plot([], [], color="0.55", label="real (test)")
    axes[0].plot([], [], color="tab:blue", label="generated")
    axes[0].legend(loc="best", fontsize=8)
    axes[0].set_title("curves")
    for values, color, label in ((real, "0.4", "real"), (generated, "tab:blue", "generated")):
        lo, hi = np.quantile(values, [0.05, 0.95], axis=0)
        axes[1].fill_between(x, lo, hi, color=color, alpha=0.25, label=f"{label} 5–95%")
        axes[1].plot(x, values.mean(0), color=color, lw=1.5, label=f"{label} mean")
    axes[1].legend(loc="best", fontsize=8)
    axes[1].set_title("mean and 5–95% band")
    for ax in axes:
        ax.set_xlabel(x_label)
    axes[0].set_ylabel(y_label)
    fig.suptitle(title)
    return _save(fig, path)
