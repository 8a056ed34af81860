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


def _coastlines(ax) -> None:
    """Coastlines when cartopy and its Natural Earth data are available offline."""
    try:  # optional: cartopy is not a dependency, and its shapefiles are not downloaded
        import cartopy.feature as cfeature  # noqa: F401
        import cartopy.io.shapereader as shapereader

        path = shapereader.natural_earth(resolution="50m", category="physical", name="coastline")
        for geom in shapereader.Reader(path).geometries():
            for line in getattr(geom, "geoms", [geom]):
                x, y = line.xy
                ax.plot(x, y, color="k", lw=0.5)
    except Exception:  # no cartopy, or no offline shapefile: plain axes
        return


def plot_downscale_maps(
    path: str | Path,
    ds,
    variable: str,
    time_index: int = 0,
    *,
    truth=None,
    stations: tuple[np.ndarray, np.ndarray] | None = None,
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
    n_members: int = 3,
) -> Path:
    """Maps of one time: [truth,] coarse input, ensemble mean, std and a few members.

    ``ds`` is the output of :func:`hdm.downscale` (``{var}``, ``{var}_mean``,
    ``{var}_std``, optionally ``{var}_coarse``); stations (lat, lon) are marked with
    black triangles, held-out stations with white circles.
    """
    sel = ds.isel(time=time_index)
    lon, lat = ds["lon"].values, ds["lat"].values
    panels = []
    if truth is not None:
        panels.append(("truth", truth, "field"))
    coarse_name = f"{variable}_coarse"
    if coarse_name in ds:
        c = sel[coarse_name]
        panels.append(("coarse input", c, "coarse"))
    panels.append(("ensemble mean", sel[f"{variable}_mean"], "field"))
    panels.append(("ensemble std", sel[f"{variable}_std"], "std"))
    for m in range(min(n_members, ds.sizes.get("member", 0))):
        panels.append((f"member {m}", sel[variable].isel(member=m), "field"))
    fields = [np.asarray(p[1]) for p in panels if p[2] in ("field", "coarse")]
    vmin = float(min(np.nanmin(f) for f in fields))
    vmax = float(max(np.nanmax(f) for f in fields))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    units = ds[variable].attrs.get("units", "")
    for ax, (title, values, kind) in zip(axes.ravel(), panels):
        if kind == "coarse":
            im = ax.pcolormesh(
                values["coarse_lon"].values,
                values["coarse_lat"].values,
                np.asarray(values),
                vmin=vmin,
                vmax=vmax,
                cmap="RdYlBu_r",
                shading="nearest",
            )
        else:
            cmap = "viridis" if kind == "std" else "RdYlBu_r"
            lim = {} if kind == "std" else {"vmin": vmin, "vmax": vmax}
            im = ax.pcolormesh(lon, lat, np.asarray(values), cmap=cmap, shading="nearest", **lim)
        fig.colorbar(im, ax=ax, shrink=0.8, label=units)
        _coastlines(ax)
        if stations is not None:
            ax.scatter(stations[1], stations[0], marker="^", s=18, c="k", label="stations")
        if heldout is not None:
            ax.scatter(heldout[1], heldout[0], marker="o", s=18, facecolors="w", edgecolors="k")
        ax.set_xlim(lon[0], lon[-1])
        ax.set_ylim(lat[0], lat[-1])
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    when = str(ds["time"].values[time_index])[:16]
    fig.suptitle(f"{variable} at {when} UTC ({ds.attrs.get('guidance', '')} guidance)")
    fig.tight_layout()
    return _save(fig, path)


def plot_rank_histogram(path: str | Path, counts: np.ndarray, title: str = "") -> Path:
    """Rank histogram (M + 1 bins) with the flat line of a calibrated ensemble."""
    counts = np.asarray(counts, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(np.arange(len(counts)), counts / counts.sum(), color="tab:blue", width=0.85)
    ax.axhline(1.0 / len(counts), color="k", ls="--", lw=1, label="calibrated")
    ax.set_xlabel("rank of the truth among the members")
    ax.set_ylabel("frequency")
    ax.legend(fontsize=8)
    ax.set_title(title or "rank histogram", fontsize=10)
    return _save(fig, path)


def plot_spectra(path: str | Path, spectra: dict, title: str = "") -> Path:
    """Radially averaged power spectra (DataArrays on ``wavenumber``), log-log."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, spec in spectra.items():
        ax.loglog(spec["wavenumber"].values, spec.values, label=label, lw=1.5)
    ax.set_xlabel("wavenumber (cycles per degree)")
    ax.set_ylabel(f"power ({spec.attrs.get('units', '')})")
    ax.legend(fontsize=8)
    ax.set_title(title or "power spectra", fontsize=10)
    return _save(fig, path)
