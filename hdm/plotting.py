"""Plots of the pipelines: 1-D functions with quantile bands, downscaled maps, rank
histograms, power spectra and spread–skill diagrams.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas
(no pyplot, so importing this module never changes the backend of a notebook or an
application), writes a PNG atomically (a temporary file in the same folder, then
``os.replace``: a failed or interrupted save leaves no half-written file) and returns
its path.

Maps are cartopy maps (PlateCarree for a regional latitude-longitude box, Robinson for
the globe) with coastlines and, on regional maps, country borders. Their outlines come
from the Natural Earth files shipped in ``data/natural_earth``
(:func:`hdm.domains.shipped.shipped_path`): while a map is drawn, cartopy's
``pre_existing_data_dir`` is that folder and its Natural Earth downloader refuses to
download, so no map ever needs the network.
"""

from __future__ import annotations

import logging
import operator
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cartopy
import cartopy.crs as ccrs
import cartopy.feature as cfeature
import numpy as np
import xarray as xr
from cartopy.io import shapereader
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hdm.data.open import normalise_conventions
from hdm.data.schema import LAT, LEVEL, LON, TIME
from hdm.data.units import known, to_units
from hdm.domains.shipped import ShippedDataError, shipped_path

_SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def readable_units(units: str | None) -> str:
    """Units as an axis label shows them: powers as superscripts, brackets round a single
    unit dropped (``"(K)**2 deg**2"`` → ``"K² deg²"``, ``"m s-1"`` → ``"m s⁻¹"``,
    ``"(m s-1)**2"`` → ``"(m s⁻¹)²"``); ``""`` for None, blank or dimensionless
    (``"1"``) units, which a label leaves out."""
    text = "" if units is None else str(units).strip()
    if text in ("", "1"):
        return ""
    # pint/Python powers (x**2, x^2) and CF exponents glued to a unit (m2, s-1)
    text = re.sub(r"(?:\*\*|\^)\s*(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPTS), text)
    text = re.sub(
        r"(?<=[A-Za-z])(?<![\d.][eE])(-?\d+)(?![\d.])",
        lambda m: m.group(1).translate(_SUPERSCRIPTS),
        text,
    )
    text = re.sub(r"\(([A-Za-z]+|1)\)(?=[⁰¹²³⁴⁵⁶⁷⁸⁹⁻])", r"\1", text)  # (K)² → K²
    text = re.sub(r"^1[⁰¹²³⁴⁵⁶⁷⁸⁹]+\s+", "", text)  # (1)² deg² → deg²
    return text


def axis_label(name: str, units: str | None = None) -> str:
    """``"name (units)"`` with :func:`readable_units`; the name alone for no units or
    dimensionless ones (``"1"``), so a dimensionless axis is never labelled "1" or
    "x (1)"."""
    shown = readable_units(units)
    return f"{name} ({shown})" if shown else name


def _figure(figsize: tuple[float, float], layout: str | None = None) -> Figure:
    fig = Figure(figsize=figsize, layout=layout)
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


#: Natural Earth resolutions of the outlines: regional maps, global maps
_REGIONAL, _GLOBAL = "50m", "110m"
_NE_KEY = ("shapefiles", "natural_earth")


def _not_the_eof_note(record: logging.LogRecord) -> bool:
    """False for pyshp's note that a .dbf file ends without the optional EOF byte: the
    shipped Natural Earth files do (their records are whole), and the note would fill
    every run's log with one line per map. pyshp's other messages pass."""
    return "misses the EOF byte" not in record.getMessage()


# a filter, not a level: maps are drawn from several threads, and pyshp's warnings stay
logging.getLogger("shapefile").addFilter(_not_the_eof_note)


class _ShippedOnly(shapereader.NEShpDownloader):
    """Cartopy's Natural Earth downloader that never downloads: a shapefile that is
    neither in the shipped folder nor in cartopy's own data folder is an error."""

    def acquire_resource(self, target_path, format_dict):
        raise ShippedDataError(
            f"hdm draws maps offline: ne_{format_dict['resolution']}_{format_dict['name']} "
            f"({format_dict['category']}) is not among the shipped Natural Earth files in "
            f"{format_dict['config']['pre_existing_data_dir']}"
        )


@contextmanager
def _offline_natural_earth() -> Iterator[Path]:
    """While drawing, cartopy reads Natural Earth from the shipped folder
    (``data/natural_earth``, see its PROVENANCE.md) and cannot download: its
    ``pre_existing_data_dir`` is that folder and its Natural Earth downloader is
    :class:`_ShippedOnly`. The caller's cartopy settings are restored afterwards."""
    folder = shipped_path("natural_earth", "the Natural Earth outlines drawn on maps")
    downloaders = cartopy.config["downloaders"]
    saved = cartopy.config["pre_existing_data_dir"], downloaders.get(_NE_KEY)
    default = shapereader.NEShpDownloader.default_downloader()
    cartopy.config["pre_existing_data_dir"] = folder
    downloaders[_NE_KEY] = _ShippedOnly(
        target_path_template=default.target_path_template,
        pre_downloaded_path_template=default.pre_downloaded_path_template,
    )
    try:
        yield folder
    finally:
        cartopy.config["pre_existing_data_dir"] = saved[0]
        if saved[1] is None:
            downloaders.pop(_NE_KEY, None)
        else:
            downloaders[_NE_KEY] = saved[1]


def _edges(centres: np.ndarray) -> tuple[float, float]:
    """The outer cell edges of sorted centres: half a spacing beyond the first and last."""
    half = 0.5 * (centres[1] - centres[0]) if centres.size > 1 else 0.5
    return float(centres[0] - half), float(centres[-1] + half)


def _is_global(lon: np.ndarray) -> bool:
    """Whether the longitudes go round the globe (their cells cover ≥ 359°)."""
    west, east = _edges(np.asarray(lon, dtype=float))
    return east - west >= 359.0


def _map_axes(fig: Figure, rows: int, cols: int, index: int, lon, lat):
    """A cartopy GeoAxes for a field on ``lon``, ``lat`` (degrees): PlateCarree clipped to
    the cells of a regional box, with coastlines and country borders (the outlines of
    ``admin_0_countries``: the shipped files have no boundary lines) at 1:50 m; Robinson
    for the whole globe, with coastlines at 1:110 m."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    if _is_global(lon):
        ax = fig.add_subplot(rows, cols, index, projection=ccrs.Robinson())
        ax.set_global()
        ax.coastlines(resolution=_GLOBAL, linewidth=0.5)
        return ax
    ax = fig.add_subplot(rows, cols, index, projection=ccrs.PlateCarree())
    ax.set_extent([*_edges(lon), *_edges(lat)], crs=ccrs.PlateCarree())
    borders = cfeature.NaturalEarthFeature("cultural", "admin_0_countries", _REGIONAL)
    ax.add_feature(borders, facecolor="none", edgecolor="0.35", linewidth=0.4)
    ax.coastlines(resolution=_REGIONAL, linewidth=0.7)
    gridlines = ax.gridlines(draw_labels=["left", "bottom"], linewidth=0.3, alpha=0.5)
    gridlines.xlabel_style = gridlines.ylabel_style = {"size": 6}
    return ax


def _time_position(ds, time_index) -> int:
    """``time_index`` as a position in ``ds``'s times (negative ones count from the end);
    a ValueError naming the number of times where there is no such time."""
    n = ds.sizes.get(TIME)
    if n is None:
        raise ValueError(f"the ensemble has no {TIME!r} dimension (dims {tuple(ds.dims)})")
    try:
        index = operator.index(time_index)
    except TypeError:
        raise TypeError(f"time_index must be an integer, got {time_index!r}") from None
    if not -n <= index < n:
        times = ds[TIME].values
        span = str(times[0])[:16] + ("" if n == 1 else f"..{str(times[-1])[:16]}")
        raise ValueError(
            f"time_index {index} is out of range: the ensemble has {n} time(s) ({span}), "
            f"indices 0..{n - 1}"
        )
    return index % n


def _positions(source: np.ndarray, target: np.ndarray, tol: float) -> np.ndarray | None:
    """The index in ``source`` (sorted ascending) of each ``target`` value, where every
    one lies within ``tol`` of a source value; else None."""
    if source.size == 0:
        return None
    right = np.clip(np.searchsorted(source, target), 0, source.size - 1)
    left = np.clip(right - 1, 0, source.size - 1)
    nearest = np.where(np.abs(source[left] - target) <= np.abs(source[right] - target), left, right)
    return nearest if np.all(np.abs(source[nearest] - target) <= tol) else None


def _spacing(values: np.ndarray) -> float:
    """The smallest step between sorted coordinate values (1 for a single value)."""
    steps = np.abs(np.diff(np.sort(values)))
    steps = steps[steps > 0]
    return float(steps.min()) if steps.size else 1.0


def _truth_on_grid(truth: xr.DataArray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A (lat, lon) truth with ascending schema coordinates, taken at the ensemble's
    ``lat``, ``lon`` (its own points where they coincide to within 0.1 % of a grid step,
    else linearly interpolated); a ValueError where it does not cover them."""
    # the truth's longitudes are in [-180, 180) (normalised); so are the targets
    target_lon = np.mod(lon + 180.0, 360.0) - 180.0
    src_lat = truth[LAT].values.astype(np.float64)
    src_lon = truth[LON].values.astype(np.float64)
    tol_lat, tol_lon = 1e-3 * _spacing(lat), 1e-3 * _spacing(target_lon)
    rows, cols = _positions(src_lat, lat, tol_lat), _positions(src_lon, target_lon, tol_lon)
    if rows is not None and cols is not None:
        return np.asarray(truth.isel({LAT: rows, LON: cols}).values, dtype=float)
    outside = [
        f"{name} {target.min():g}..{target.max():g} "
        f"(the truth's: {source.min():g}..{source.max():g})"
        for name, source, target, tol in (
            (LAT, src_lat, lat, tol_lat),
            (LON, src_lon, target_lon, tol_lon),
        )
        if target.min() < source.min() - tol or target.max() > source.max() + tol
    ]
    if outside:
        raise ValueError("the truth does not cover the ensemble's grid: " + "; ".join(outside))
    at_lat = np.clip(lat, src_lat.min(), src_lat.max())
    at_lon = np.clip(target_lon, src_lon.min(), src_lon.max())
    points = {LAT: xr.DataArray(at_lat, dims=LAT), LON: xr.DataArray(at_lon, dims=LON)}
    return np.asarray(truth.interp(points, method="linear").values, dtype=float)


def truth_field(
    ds, variable: str, time_index: int, truth, level: float | None = None
) -> np.ndarray:
    """The truth panel of :func:`plot_downscale_maps`: ``truth`` as a (lat, lon) array
    on the grid of ``ds`` (the ensemble), at its time ``time_index``, in its units.

    A DataArray is put into the ensemble's frame first, as inputs are
    (:func:`hdm.data.open.normalise_conventions`: schema names such as ``latitude``,
    ascending latitude, longitudes in [-180, 180)); then converted to the units of
    ``ds[variable]`` where both have units (:func:`hdm.data.units.to_units`: °C to K);
    its time is the ensemble's time at ``time_index`` (a time dimension is selected at
    it, a scalar time coordinate must be it); its ``level`` (hPa) is selected where it
    has levels; and it is taken at the ensemble's latitudes and longitudes (its own
    points where they coincide, else linearly interpolated; it must cover them). A numpy
    array is drawn as it is: it must have the grid's shape (n_lat, n_lon) exactly.

    Raises:
        ValueError: one line naming what does not fit (shape, dims, time, level, units,
            coverage).
    """
    index = _time_position(ds, time_index)
    lat, lon = ds[LAT].values.astype(np.float64), ds[LON].values.astype(np.float64)
    shape = (lat.size, lon.size)
    if not isinstance(truth, xr.DataArray):
        values = np.asarray(truth, dtype=float)
        if values.shape != shape:
            raise ValueError(
                f"the truth array has shape {values.shape}; the ensemble's grid is "
                f"(lat, lon) = {shape}: pass a DataArray with lat/lon coordinates to have it "
                "put on the grid"
            )
        return values
    name = "__hdm_truth__"
    field = normalise_conventions(truth.to_dataset(name=name), "the truth")[name]
    missing = [d for d in (LAT, LON) if d not in field.dims or d not in field.coords]
    if missing:
        raise ValueError(
            f"the truth DataArray needs {LAT!r} and {LON!r} dimensions with coordinates; "
            f"it lacks {missing} (dims {tuple(truth.dims)})"
        )
    units = ds[variable].attrs.get("units")
    if known(units) and known(field.attrs.get("units")):
        field = to_units(field, units, "the truth")
    when = ds[TIME].values[index]
    if TIME in field.dims:
        hits = np.flatnonzero(field[TIME].values == when)
        if hits.size == 0:
            times = field[TIME].values
            raise ValueError(
                f"the truth has no time {str(when)[:16]} (time_index {index} of the "
                f"ensemble); its {times.size} time(s) run {str(times[0])[:16]}.."
                f"{str(times[-1])[:16]}"
            )
        field = field.isel({TIME: int(hits[0])})
    elif TIME in field.coords and field[TIME].ndim == 0 and field[TIME].values != when:
        raise ValueError(
            f"the truth is at {str(field[TIME].values)[:16]}, the ensemble's time_index "
            f"{index} at {str(when)[:16]}"
        )
    if LEVEL in field.dims:
        if level is None:
            raise ValueError(
                f"the truth has {field.sizes[LEVEL]} pressure levels and the map has none: "
                "give level= (hPa), or select the truth's level"
            )
        found = np.flatnonzero(np.isclose(field[LEVEL].values.astype(float), float(level)))
        if found.size == 0:
            have = ", ".join(f"{v:g}" for v in field[LEVEL].values)
            raise ValueError(f"the truth has no level {level:g} hPa; its levels: {have} hPa")
        field = field.isel({LEVEL: int(found[0])})
    extra = [d for d in field.dims if d not in (LAT, LON)]
    field = field.squeeze([d for d in extra if field.sizes[d] == 1], drop=True)
    extra = [d for d in field.dims if d not in (LAT, LON)]
    if extra:
        sizes = ", ".join(f"{d}: {field.sizes[d]}" for d in extra)
        raise ValueError(
            f"the truth has dimension(s) besides time, level, lat and lon ({sizes}): select one "
            "field"
        )
    return _truth_on_grid(field.transpose(LAT, LON), lat, lon)


def _map_panels(
    ds, variable: str, time_index: int, truth, n_members: int, level: float | None = None
) -> list:
    """(title, lon, lat, values, kind) of each panel of :func:`plot_downscale_maps`."""
    index = _time_position(ds, time_index)
    sel = ds.isel(time=index)
    lon, lat = ds["lon"].values, ds["lat"].values
    panels = []
    if truth is not None:
        panels.append(("truth", lon, lat, truth_field(ds, variable, index, truth, level), "field"))
    coarse_name = f"{variable}_coarse"
    if coarse_name in ds:
        c = sel[coarse_name]
        panels.append(("coarse input", c["coarse_lon"].values, c["coarse_lat"].values, c, "field"))
    if ds.sizes.get("member", 0) != 1:  # one member: its mean is itself, its std undefined
        panels.append(("ensemble mean", lon, lat, sel[f"{variable}_mean"], "field"))
        panels.append(("ensemble std", lon, lat, sel[f"{variable}_std"], "std"))
    for m in range(min(n_members, ds.sizes.get("member", 0))):
        panels.append((f"member {m}", lon, lat, sel[variable].isel(member=m), "field"))
    return [(t, x, y, np.asarray(v, dtype=float), k) for t, x, y, v, k in panels]


def _map_variable(ds, variable: str, level: float | None):
    """``ds`` at ``level`` (hPa) where one is given; a one-line error naming what is
    there where ``variable`` or ``level`` is not."""
    needed = [variable]
    if ds.sizes.get("member", 0) != 1:  # the mean and std panels (see _map_panels)
        needed += [f"{variable}_mean", f"{variable}_std"]
    missing = [v for v in needed if v not in ds.data_vars]
    if missing:
        raise KeyError(
            f"the ensemble has no {', '.join(missing)}: plot_downscale_maps needs the output "
            f"of hdm.downscale; its variables are {list(ds.data_vars)}"
        )
    if level is None:
        return ds
    if LEVEL not in ds.dims:
        raise ValueError(f"level={level:g} was given, but the ensemble has no {LEVEL!r} dimension")
    found = np.flatnonzero(np.isclose(ds[LEVEL].values.astype(float), float(level)))
    if found.size == 0:
        have = ", ".join(f"{v:g}" for v in ds[LEVEL].values)
        raise ValueError(f"the ensemble has no level {level:g} hPa; its levels: {have} hPa")
    return ds.isel({LEVEL: int(found[0])})


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
    level: float | None = None,
) -> Path:
    """Maps of one time: [truth,] coarse input, ensemble mean, std and a few members
    (at pressure ``level``, hPa, for a variable on levels).

    ``ds`` is the output of :func:`hdm.downscale` (``{var}``, ``{var}_mean``,
    ``{var}_std``, optionally ``{var}_coarse``); stations (lat, lon) are marked with
    black triangles, held-out stations with white circles. Every panel is a cartopy map
    (:func:`_map_axes`: coastlines, and country borders on regional maps, drawn from the
    shipped Natural Earth files, never downloaded); the fields share one colour scale,
    the std has its own.

    ``truth`` is a DataArray (put on the ensemble's grid, time ``time_index``, units and
    ``level`` by :func:`truth_field`: a field as opened from a file, with latitudes
    descending, in °C or with its time dimension, is drawn as the members are) or a
    (lat, lon) numpy array already on the ensemble's grid. A ``time_index`` outside the
    ensemble's times, a truth that does not fit, or a ``variable`` or ``level`` the
    ensemble lacks is a one-line error.
    """
    ds = _map_variable(ds, variable, level)
    time_index = _time_position(ds, time_index)
    panels = _map_panels(ds, variable, time_index, truth, n_members, level)
    fields = [values for *_, values, kind in panels if kind == "field"]
    vmin = float(min(np.nanmin(f) for f in fields))
    vmax = float(max(np.nanmax(f) for f in fields))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure((3.6 * cols, 3.0 * rows), layout="constrained")
    units = ds[variable].attrs.get("units", "")
    plate = ccrs.PlateCarree()
    field_style = {"cmap": "RdYlBu_r", "vmin": vmin, "vmax": vmax}
    for i, (title, lon, lat, values, kind) in enumerate(panels):
        ax = _map_axes(fig, rows, cols, i + 1, ds["lon"].values, ds["lat"].values)
        style = {"cmap": "viridis"} if kind == "std" else field_style
        im = ax.pcolormesh(lon, lat, values, shading="nearest", transform=plate, **style)
        # below the map: a lat-lon box is wider than tall, and so is the bar then
        bar = fig.colorbar(im, ax=ax, orientation="horizontal", shrink=0.9, pad=0.02, aspect=30)
        bar.set_label(units, fontsize=8)
        bar.ax.tick_params(labelsize=7)
        for points, marker in (
            (stations, {"marker": "^", "c": "k"}),
            (heldout, {"marker": "o", "facecolors": "w", "edgecolors": "k"}),
        ):
            if points is not None:
                ax.scatter(points[1], points[0], s=18, transform=plate, zorder=5, **marker)
        ax.set_title(title, fontsize=9)
    when = str(ds["time"].values[time_index])[:16]
    guidance = ds.attrs.get("guidance")
    where = "" if level is None else f" {level:g} hPa"
    fig.suptitle(
        f"{variable}{where} at {when} UTC" + (f" ({guidance} guidance)" if guidance else "")
    )
    with _offline_natural_earth():  # the outlines are read when the figure is drawn
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
    ax.set_ylabel(axis_label("power", spec.attrs.get("units")))
    ax.legend(fontsize=8)
    ax.set_title(title or "power spectra", fontsize=10)
    return _save(fig, path)


def plot_gaussian_curve(
    path: str | Path, curve: dict, varsigma_star: float | None, title: str = ""
) -> Path:
    """The held-out denoising errors of a model's network and of the Gaussian, and their
    difference, against the noise level ς (log-log), with the ς* they give
    (:mod:`hdm.pipelines.gaussian_stats`)."""
    fig = _figure((5.5, 3.8))
    ax = fig.subplots()
    ax.loglog(curve["varsigma"], curve["network_error"], "o-", ms=3, label="network ‖D_θ − x₀‖")
    ax.loglog(curve["varsigma"], curve["gaussian_error"], "s-", ms=3, label="Gaussian ‖D_G − x₀‖")
    ax.loglog(curve["varsigma"], curve["difference"], ":", label="difference ‖D_θ − D_G‖")
    if varsigma_star is not None:
        ax.axvline(varsigma_star, color="k", lw=1, ls="--", label=f"ς* = {varsigma_star:.3g}")
    ax.set_xlabel("noise level ς = σ/α")
    ax.set_ylabel("relative to ‖x₀ − m‖ (held-out fields)")
    ax.legend(fontsize=8)
    ax.set_title(title or "learned vs Gaussian denoiser", fontsize=10)
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
