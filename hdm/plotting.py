"""Plots of the pipelines: 1-D functions with quantile bands, downscaled maps, rank
histograms, power spectra and spread–skill diagrams.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas
(no pyplot, so importing this module never changes the backend of a notebook or an
application), writes a PNG atomically (a temporary file in the same folder, then
``os.replace``: a failed or interrupted save leaves no half-written file) and returns
its path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` via a temporary file (removed if the save fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def plot_functions(
    path: str | Path,
    x: np.ndarray,
    generated: np.ndarray,
    real: np.ndarray | None = None,
    *,
    title: str = "",
    x_label: str = "x",
    y_label: str = "y",
    n_show: int = 12,
    levels: tuple[float, ...] = (0.9, 0.5),
) -> Path:
    """Left: a few generated [and real] curves. Right: pointwise median and central
    quantile bands of both.

    ``generated`` and ``real`` are (n_curves, n_points) on ``x`` (``real`` may be None:
    generated curves only). ``levels`` are the probabilities of the central bands, e.g.
    0.9 is the band between the pointwise 5 % and 95 % quantiles.
    """
    generated = np.asarray(generated, dtype=float)
    sets = [] if real is None else [(np.asarray(real, dtype=float), "0.4", "real")]
    sets.append((generated, "tab:blue", "generated"))
    fig = _figure((11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for values, color, label in sets:
        for row in values[:n_show]:
            axes[0].plot(x, row, color=color, lw=0.8, alpha=0.8)
        axes[0].plot([], [], color=color, label="real (test)" if label == "real" else label)
    axes[0].legend(loc="best", fontsize=8)
    axes[0].set_title("curves")
    for values, color, label in sets:
        for level in sorted(levels, reverse=True):
            lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
            pct = f"{100 * (1 - level) / 2:g}–{100 * (1 + level) / 2:g}%"
            axes[1].fill_between(x, lo, hi, color=color, alpha=0.2, lw=0, label=f"{label} {pct}")
        axes[1].plot(x, np.median(values, axis=0), color=color, lw=1.5, label=f"{label} median")
    axes[1].legend(loc="best", fontsize=7)
    axes[1].set_title("pointwise median and central quantile bands")
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
    fig = _figure((3.6 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
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
    fig = _figure((5, 3.2))
    ax = fig.subplots()
    ax.bar(np.arange(len(counts)), counts / counts.sum(), color="tab:blue", width=0.85)
    ax.axhline(1.0 / len(counts), color="k", ls="--", lw=1, label="calibrated")
    ax.set_xlabel("rank of the truth among the members")
    ax.set_ylabel("frequency")
    ax.legend(fontsize=8)
    ax.set_title(title or "rank histogram", fontsize=10)
    return _save(fig, path)


def plot_spectra(path: str | Path, spectra: dict, title: str = "") -> Path:
    """Radially averaged power spectra (DataArrays on ``wavenumber``), log-log."""
    fig = _figure((5.5, 3.8))
    ax = fig.subplots()
    for label, spec in spectra.items():
        ax.loglog(spec["wavenumber"].values, spec.values, label=label, lw=1.5)
    ax.set_xlabel("wavenumber (cycles per degree)")
    ax.set_ylabel(f"power ({spec.attrs.get('units', '')})")
    ax.legend(fontsize=8)
    ax.set_title(title or "power spectra", fontsize=10)
    return _save(fig, path)


@dataclass(frozen=True)
class SpreadSkillBins:
    """Binned spread and skill of an ensemble (see :func:`spread_skill_bins`).

    ``spread``, ``rmse`` and ``count`` have one value per bin, ordered by spread;
    ``ratio`` is the spread–skill ratio over all points (that of
    :func:`hdm.metrics.probabilistic.spread_skill` for the same points and weights).
    """

    spread: np.ndarray
    rmse: np.ndarray
    count: np.ndarray
    ratio: float
    members: int


def spread_skill_bins(
    spread: np.ndarray,
    skill: np.ndarray,
    members: int,
    *,
    weights: np.ndarray | None = None,
    n_bins: int = 10,
) -> SpreadSkillBins:
    r"""Ensemble spread against the RMSE of the ensemble mean, in bins of spread.

    The points are sorted by their spread s and split into ``n_bins`` bins of (nearly)
    equal counts; in bin b, with weights w (area weights, or 1),

    .. math:: \mathrm{spread}_b = \sqrt{\tfrac{M+1}{M}\,\langle s^2\rangle_b},\qquad
              \mathrm{RMSE}_b = \sqrt{\langle (\bar x - y)^2\rangle_b},

    the same √((M+1)/M) factor as :func:`hdm.metrics.probabilistic.spread_skill`: for
    members and truth exchangeable, E(x̄ − y)² = (M+1)/M · E s², so a calibrated
    ensemble puts every bin on the 1:1 line; spread_b < RMSE_b is under-dispersion.
    (With few members s is a noisy estimate of the spread, and sorting by it selects
    its errors: even for a calibrated ensemble the lowest-spread bins fall a little
    below the line and the highest a little above it.)

    Args:
        spread: per-point ensemble standard deviation s (ddof = 1), any shape.
        skill: per-point error of the ensemble mean x̄ − y (sign irrelevant), the shape
            of ``spread``.
        members: ensemble size M (≥ 2).
        weights: non-negative weights broadcastable to ``spread``'s shape (default 1).
        n_bins: number of bins (fewer when there are fewer valid points).

    Points where any of spread, skill or weight is not finite are left out.
    """
    if isinstance(members, bool) or int(members) < 2:
        raise ValueError(f"spread–skill needs at least 2 members, got {members!r}")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins!r}")
    s = np.asarray(spread, dtype=np.float64)
    e = np.asarray(skill, dtype=np.float64)
    if s.shape != e.shape:
        raise ValueError(f"spread and skill must have one shape, got {s.shape} and {e.shape}")
    w = np.ones_like(s) if weights is None else np.broadcast_to(np.asarray(weights, float), s.shape)
    s, e, w = s.ravel(), e.ravel(), w.ravel()
    ok = np.isfinite(s) & np.isfinite(e) & np.isfinite(w) & (w >= 0)
    s, e, w = s[ok], e[ok], w[ok]
    if s.size == 0 or w.sum() <= 0:
        raise ValueError("spread–skill: no finite point with a positive weight")
    m = int(members)
    factor = (m + 1) / m
    order = np.argsort(s, kind="stable")
    chunks = [c for c in np.array_split(order, min(int(n_bins), s.size)) if w[c].sum() > 0]
    binned_spread = np.array(
        [np.sqrt(factor * np.sum(w[c] * s[c] ** 2) / np.sum(w[c])) for c in chunks]
    )
    binned_rmse = np.array([np.sqrt(np.sum(w[c] * e[c] ** 2) / np.sum(w[c])) for c in chunks])
    pooled_spread = np.sqrt(factor * np.sum(w * s**2) / np.sum(w))
    pooled_rmse = np.sqrt(np.sum(w * e**2) / np.sum(w))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(pooled_spread / pooled_rmse)
    return SpreadSkillBins(
        spread=binned_spread,
        rmse=binned_rmse,
        count=np.array([c.size for c in chunks]),
        ratio=ratio,
        members=m,
    )


def plot_spread_skill(
    path: str | Path,
    spread: np.ndarray,
    skill: np.ndarray,
    *,
    members: int,
    weights: np.ndarray | None = None,
    n_bins: int = 10,
    units: str = "",
    title: str = "",
) -> Path:
    """Spread–skill diagram: binned √((M+1)/M)·spread against the RMSE of the ensemble
    mean (:func:`spread_skill_bins`), with the 1:1 line of a calibrated ensemble.

    The RMSE is on the x axis and the spread on the y axis, so bins below the line are
    under-dispersive (too confident) and bins above it over-dispersive. Arguments as in
    :func:`spread_skill_bins`; ``units`` labels the axes.
    """
    bins = spread_skill_bins(spread, skill, members, weights=weights, n_bins=n_bins)
    fig = _figure((4.6, 4.4))
    ax = fig.subplots()
    top = 1.05 * float(np.nanmax([bins.spread.max(), bins.rmse.max()]))
    top = top if np.isfinite(top) and top > 0 else 1.0
    ax.plot([0, top], [0, top], color="k", ls="--", lw=1, label="1:1 (calibrated)")
    ax.plot(
        bins.rmse,
        bins.spread,
        "o-",
        color="tab:blue",
        ms=4,
        label=f"{len(bins.count)} bins of spread (SSR {bins.ratio:.2f})",
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    unit = f" ({units})" if units else ""
    ax.set_xlabel(f"RMSE of the ensemble mean{unit}")
    ax.set_ylabel(f"spread √((M+1)/M)·s, M = {bins.members}{unit}")
    ax.text(0.97 * top, 0.03 * top, "under-dispersive", ha="right", va="bottom", fontsize=8)
    ax.text(0.03 * top, 0.97 * top, "over-dispersive", ha="left", va="top", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.9), fontsize=8)
    ax.set_title(title or "spread–skill", fontsize=10)
    return _save(fig, path)
