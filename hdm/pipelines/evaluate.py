"""``hdm evaluate``: samples and ensembles against the truth, read → score → plot.

``hdm evaluate functional``: generated curves against the real held-out curves.
Generated curves are compared with the dataset's *test* split; the dataset's *valid*
split (real curves never trained on) gives the real-vs-real floors and the null
calibration of the power test (see :mod:`hdm.metrics.two_sample`). Curves sampled on
another grid than the dataset's are linearly interpolated onto the dataset's points.

``hdm evaluate downscale``: :func:`read_downscale` reads a prediction store (its members
and the inputs stored with them) and the truth; :func:`kriging_baseline` and
:func:`score_downscale` compute every score of :mod:`hdm.metrics.probabilistic` for the
ensemble, interpolation and kriging; :func:`plot_downscale_scores` draws them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.data.accessor import grid_of
from hdm.data.coarsen import CELL_BOUND_COORDS
from hdm.data.open import open_fields
from hdm.data.regrid import interpolate_coarse, values_at_points
from hdm.data.schema import TIME, lat_weights, variable_in
from hdm.data.stores import open_store, read_manifest
from hdm.data.units import to_units
from hdm.domains.atmosphere import open_split, training_spec
from hdm.domains.functional import curves, load_functional
from hdm.domains.statics import static_field
from hdm.domains.stations import first_occurrences, parse_ids, read_stations, stations_by_id
from hdm.downscaling.inputs import point_sampled
from hdm.downscaling.output import noise_std
from hdm.hilbert.checkpoints import load_checkpoint
from hdm.hilbert.grids import GlobalGrid
from hdm.metrics import baselines as bl
from hdm.metrics import probabilistic as pm
from hdm.metrics.two_sample import functional_report
from hdm.plotting import (
    axis_label,
    plot_functions,
    plot_rank_histogram,
    plot_spectra,
    plot_spread_skill,
    spread_skill_bins,
)

log = logging.getLogger(__name__)


def open_samples(path: str | Path) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"samples file {path} does not exist")
    try:
        ds = xr.load_dataset(path)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable netCDF file ({exc})") from exc
    if "y" not in ds or ds["y"].dims != ("sample", "x"):
        raise ValueError(
            f"{path} must hold a variable 'y' with dims ('sample', 'x'); "
            f"found variables {list(ds.data_vars)}"
        )
    return ds


def on_dataset_grid(samples: xr.DataArray, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Samples at the dataset's points (interpolated if the grids differ) and a note."""
    xs = samples["x"].values
    if len(xs) == len(x) and np.allclose(xs, x):
        return samples.values, "same grid"
    if xs.min() > x.min() + 1e-9 or xs.max() < x.max() - 1e-9:
        raise ValueError(
            f"samples cover x ∈ [{xs.min():g}, {xs.max():g}] but the dataset needs "
            f"[{x.min():g}, {x.max():g}]"
        )
    values = np.stack([np.interp(x, xs, row) for row in samples.values])
    return values, f"interpolated from {len(xs)} to {len(x)} points"


def evaluate_functional(
    dataset: str, samples_path: str | Path, *, seed: int | None = None, quick: bool = False
) -> dict:
    """The metrics report (a JSON-able dict) of a samples file against ``dataset``."""
    samples = open_samples(samples_path)
    data_seed = int(samples.attrs.get("data_seed", 0)) if seed is None else seed
    ds = load_functional(dataset, seed=data_seed)
    trained_on = samples.attrs.get("dataset")
    if trained_on and trained_on != dataset:
        raise ValueError(
            f"{samples_path} holds samples of a model trained on {trained_on!r}, not {dataset!r}"
        )
    generated, note = on_dataset_grid(samples["y"], ds["x"].values)
    x = ds["x"].values
    weights = np.gradient(x) if len(x) > 1 else None
    report = functional_report(
        generated,
        curves(ds, "test").values,
        curves(ds, "valid").values,
        seed=0,
        weights=weights,
        quick=quick,
    )
    report.update(
        dataset=dataset,
        samples=str(samples_path),
        grid=note,
        sampler=samples.attrs.get("sampler", ""),
        steps=int(samples.attrs.get("steps", 0)),
        nfe=int(samples.attrs.get("nfe", 0)),
    )
    return report


def plot_functional(dataset: str, samples_path: str | Path, png: str | Path) -> Path:
    """Generated curves (a samples file) against the dataset's real test curves, as PNG."""
    samples = open_samples(samples_path)
    ds = load_functional(dataset, seed=int(samples.attrs.get("data_seed", 0)))
    generated, _ = on_dataset_grid(samples["y"], ds["x"].values)
    return plot_functions(
        png,
        ds["x"].values,
        generated,
        curves(ds, "test").values,
        title=f"{dataset}: generated vs real",
        x_label=axis_label("x", ds.attrs.get("x_units")),
    )


# ------------------------------------------------------------------ downscaling


def open_prediction(path: str | Path | xr.Dataset) -> xr.Dataset:
    """A store written by ``hdm downscale`` (zarr or netCDF), or the dataset of
    :func:`hdm.downscale` itself (a loaded copy), with its ensemble variables named in
    the attribute ``hdm_variables``. A zarr store whose manifest
    (:func:`hdm.data.stores.read_manifest`) lists fewer complete time chunks than it
    planned (an interrupted run: the missing chunks hold no values) is refused in one
    line naming it and the ``--resume`` that completes it."""
    if isinstance(path, xr.Dataset):
        ds = path.copy().load()  # the caller's dataset and its attributes stay as they are
        ds.attrs["hdm_variables"] = _ensemble_variables(ds, "the prediction dataset")
        return ds
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"the prediction must be a store path or an xr.Dataset (hdm.downscale's), got "
            f"{type(path).__name__}"
        )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prediction store {path} does not exist")
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None:
        # a batch store records n_chunks; a store of write_zarr_ensemble its layout's
        planned = manifest.get("n_chunks", manifest.get("layout", {}).get("n_chunks"))
        done = len(manifest.get("complete", []))
        if planned is not None and done < int(planned):
            raise ValueError(
                f"the prediction store {path} is incomplete ({done} of {planned} time chunks "
                f"written: its run was interrupted); finish it with hdm downscale ... --out "
                f"{path} --resume (the same command and options) before evaluating it"
            )
    ds = open_store(path).load()
    ds.attrs["hdm_variables"] = _ensemble_variables(ds, path)
    return ds


def _ensemble_variables(ds: xr.Dataset, path) -> list[str]:
    """The ensemble variables of a prediction (each with 'member' and its '_mean'),
    checked to be single-level and regional (``path`` names it in errors)."""
    names = [n for n in ds.data_vars if f"{n}_mean" in ds.data_vars and "member" in ds[n].dims]
    if not names:
        raise ValueError(
            f"{path} is not an hdm downscale output (a variable with 'member' and its "
            f"'_mean'); variables: {list(ds.data_vars)}"
        )
    if ds.sizes["member"] < 2:
        raise ValueError(
            f"{path} holds one member: the ensemble's scores (fair CRPS, spread–skill, "
            "coverage, rank histogram) need at least 2"
        )
    on_levels = [n for n in names if "level" in ds[n].dims]
    if on_levels:
        raise ValueError(
            f"{path}: {on_levels} are on pressure levels; hdm evaluate downscale scores "
            "single-level variables (levels are scored by python -m benchmarks rhine_profiles)"
        )
    if isinstance(grid_of(ds[names[0]]), GlobalGrid):
        raise ValueError(
            f"{path} covers the whole globe; hdm evaluate downscale scores regional fields "
            "(planar spectra, block means, local kriging): the sphere is scored by "
            "python -m benchmarks sphere_downscale"
        )
    return names


def _heldout_stations(spec: str | None):
    """Held-out station coordinates: IGRA2 ids (comma-separated) or a CSV table."""
    if not spec:
        return None
    if Path(spec).suffix.lower() == ".csv" or Path(spec).exists():
        obs = read_stations(spec)
        first = first_occurrences(obs["id"].values)
        return (
            obs["id"].values.astype(str)[first],
            obs["lat"].values[first].astype(float),
            obs["lon"].values[first].astype(float),
        )
    st = stations_by_id(parse_ids(spec))
    return (
        st["id"].values.astype(str),
        st["lat"].values.astype(float),
        st["lon"].values.astype(float),
    )


def _training_fields(prediction: xr.Dataset, variable: str, checkpoint: str | None):
    """The model's training period (for the kriging kernel), from its checkpoint."""
    path = Path(checkpoint or prediction.attrs.get("checkpoint", ""))
    if not path.is_file():
        raise FileNotFoundError(
            f"the model checkpoint {str(path)!r} (needed to fit the kriging kernel on its "
            "training period) was not found; pass --checkpoint"
        )
    metadata = load_checkpoint(path).get("metadata", {})
    spec = training_spec(metadata)
    training = open_split(spec, "train")[variable].load()
    _warn_if_in_sample(prediction, training, metadata.get("train_days"), path)
    return training


def _warn_if_in_sample(
    prediction: xr.Dataset, training: xr.DataArray, train_days, checkpoint: Path
) -> None:
    """A warning where prediction times are among the fields the model was trained on
    (its training period, or its chosen ``train_days``): the ensemble's scores there are
    in-sample, and so are OI's, whose covariance is fitted on those fields."""
    times = prediction[TIME].values
    if train_days:
        seen = np.isin(times.astype("datetime64[D]"), np.array(train_days, "datetime64[D]"))
    else:
        first, last = training[TIME].values[0], training[TIME].values[-1]
        seen = (times >= first) & (times <= last)
    if seen.any():
        warnings.warn(
            f"{int(seen.sum())} of the prediction's {len(times)} times (from "
            f"{str(times[seen][0])[:16]}) lie among the fields the model {checkpoint} was "
            "trained on: its scores there are in-sample, and so are OI's (its covariance "
            "is fitted on those fields); score unseen times",
            UserWarning,
            stacklevel=3,
        )


def _hours_between(times: np.ndarray) -> float:
    """Median spacing of the times, hours."""
    if len(times) < 2:
        return 1.0
    return float(np.median(np.diff(times.astype("datetime64[s]").astype(np.int64))) / 3600)


@dataclass
class DownscaleEvaluation:
    """What the scores of a downscaled ensemble are computed from (:func:`read_downscale`).

    ``truth`` is on its own grid, ``truth_on_pred`` on the prediction's (interpolated
    when the prediction is finer: zero-shot super-resolution). ``coarse`` is the stored
    conditioning field on (time, lat, lon) of the coarse grid, ``factor`` its
    coarse-graining factor when its cells are blocks of the truth's grid (None for point
    values and other grids, where the baselines use the general operators of
    :func:`hdm.metrics.baselines.kriging_downscale`); ``stations`` the stored
    conditioning stations as (ids, lat, lon, values (time, station)) or None.
    """

    prediction: xr.Dataset
    variable: str
    truth: xr.DataArray
    truth_on_pred: xr.DataArray
    coarse: xr.DataArray | None
    factor: int | None
    stations: tuple | None

    @property
    def ensemble(self) -> xr.DataArray:
        return self.prediction[self.variable]

    @property
    def mean(self) -> xr.DataArray:
        return self.prediction[f"{self.variable}_mean"]

    @property
    def same_grid(self) -> bool:
        return all(self.truth.sizes[d] == self.prediction.sizes[d] for d in ("lat", "lon"))

    @property
    def times(self) -> np.ndarray:
        return self.prediction["time"].values


def _stored_stations(pred: xr.Dataset, times: np.ndarray, variable: str) -> tuple | None:
    """The conditioning stations of ``variable`` stored with a prediction, as (ids, lat,
    lon, values (time, station))."""
    if "station_obs" not in pred:
        return None
    obs = pred["station_obs"]
    if "obs_variable" in obs.coords:
        obs = obs.isel(obs=np.flatnonzero(obs["obs_variable"].values.astype(str) == variable))
        if obs.sizes["obs"] == 0:
            return None
    obs = to_units(obs, pred[variable].attrs.get("units"), "the stored stations")
    ids = obs["obs_id"].values.astype(str)
    order = first_occurrences(ids)
    unique = ids[order]
    table = np.full((len(times), len(unique)), np.nan)
    column = {s: k for k, s in enumerate(unique)}
    row = {t: i for i, t in enumerate(times.astype("datetime64[ns]"))}
    for k in range(obs.sizes["obs"]):
        i = row.get(obs["obs_time"].values[k].astype("datetime64[ns]"))
        if i is not None:
            table[i, column[ids[k]]] = float(obs.values[k])
    values = xr.DataArray(table, dims=("time", "station"), coords={"time": times})
    return unique, obs["obs_lat"].values[order], obs["obs_lon"].values[order], values


def _truth_variable(ds: xr.Dataset, var: str, source) -> xr.DataArray:
    """The truth's ``var``, under its own name or a CMIP / GRIB one (``tas`` for ``t2m``,
    :data:`hdm.data.schema.VARIABLE_ALIASES`); a file of one variable under any other
    name is taken as it, as ``hdm downscale`` takes its inputs."""
    present = [str(v) for v in ds.data_vars]
    found = variable_in(present, var)
    if found is not None:
        return ds[found].rename(var)
    if len(present) == 1:
        log.info("the truth %s holds one variable, %r: taken as %s", source, present[0], var)
        return ds[present[0]].rename(var)
    raise KeyError(f"the truth {source} has no {var!r} and several variables: {present}")


#: a grid description of :meth:`hdm.hilbert.grids.Grid.describe`, one axis (read only
#: from stores written without the spacings as numbers, :func:`_training_spacing`)
_AXIS_TEXT = re.compile(r"(lat|lon) ∈ \[([^,\]]+), ([^\]]+)\] \((closed|periodic), (\d+) points\)")


def _spacing(values: np.ndarray) -> float | None:
    """The median spacing of a coordinate (None for a single point)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.median(np.abs(np.diff(values)))) if values.size > 1 else None


def _training_spacing(pred: xr.Dataset) -> dict[str, float] | None:
    """The lat and lon spacing (degrees) of the grid the prediction's model was trained
    on: its attributes ``training_grid_lat_spacing_deg`` and
    ``training_grid_lon_spacing_deg`` (:func:`hdm.downscaling.output.training_grid_attrs`),
    else the text of its ``training_grid`` attribute; None where neither gives both."""
    try:
        found = {a: float(pred.attrs[f"training_grid_{a}_spacing_deg"]) for a in ("lat", "lon")}
    except (KeyError, TypeError, ValueError):  # absent, or not a number
        found = {}
    if found and all(np.isfinite(step) and step > 0 for step in found.values()):
        return found
    # stores written before the spacings were stored as numbers: parse the description
    found = {}
    for name, start, stop, kind, n in _AXIS_TEXT.findall(str(pred.attrs.get("training_grid"))):
        n = int(n) if kind == "periodic" else int(n) - 1
        if n > 0:
            found[name] = abs(float(stop) - float(start)) / n
    return found if set(found) == {"lat", "lon"} else None


def _extent(da: xr.DataArray | xr.Dataset) -> str:
    lat, lon = da["lat"].values, da["lon"].values
    return f"lat ∈ [{lat.min():g}, {lat.max():g}], lon ∈ [{lon.min():g}, {lon.max():g}]"


def _check_truth_grid(truth: xr.DataArray, pred: xr.Dataset, source) -> None:
    """The truth can score the prediction on its grid: not coarser than the prediction's
    grid (or, for a zero-shot refinement, than the training grid it was refined from:
    a truth on the training grid is interpolated onto the finer one), and covering the
    prediction's lat-lon extent to within half of the prediction's grid spacing. One
    line naming the truth ``source`` and both grids otherwise."""
    axes = ("lat", "lon")
    fine = {a: _spacing(pred[a].values) for a in axes}
    have = {a: _spacing(truth[a].values) for a in axes}
    trained = _training_spacing(pred)
    allowed = {a: max(fine[a] or 0.0, (trained or {}).get(a, 0.0)) for a in axes}
    if any(have[a] is not None and have[a] > allowed[a] * (1 + 1e-3) for a in axes):

        def text(d):
            return " × ".join("?" if d[a] is None else f"{d[a]:.4g}°" for a in axes)

        refined = trained is not None and any(
            trained[a] > (fine[a] or 0.0) * (1 + 1e-3) for a in axes
        )
        than = f"the prediction's {text(fine)}"
        if refined:
            than += f" and than the {text(trained)} training grid it refines"
        raise ValueError(
            f"the truth {source} has a grid spacing of {text(have)} (lat × lon), coarser than "
            f"{than}: "
            "the ensemble's fine scales cannot be scored against it; give a truth at least "
            f"as fine as the {'training grid' if refined else 'prediction'}"
        )
    for a in axes:
        tol = 0.5 * (fine[a] or 0.0) + 1e-9
        t, p = truth[a].values, pred[a].values
        if t.min() > p.min() + tol or t.max() < p.max() - tol:
            raise ValueError(
                f"the truth {source} covers {_extent(truth)}, not the prediction's grid "
                f"({_extent(pred)}): give a truth over the whole prediction domain"
            )


def read_downscale(
    prediction: str | Path | xr.Dataset, truth: str | Path, variable: str | None = None
) -> DownscaleEvaluation:
    """Read a prediction store (or an opened one), the stored inputs of ``variable``
    (default: the store's only variable) and the truth at its times, checked to cover the
    prediction's grid at its resolution (:func:`_check_truth_grid`). A truth on another
    grid is interpolated (bilinear) onto the prediction's, the prediction's edge points
    within half a spacing of the truth's taken at its edge."""
    pred = prediction if isinstance(prediction, xr.Dataset) else open_prediction(prediction)
    names = pred.attrs.get("hdm_variables") or _ensemble_variables(pred, "the prediction")
    if variable is None and len(names) > 1:
        raise ValueError(f"the prediction holds {names}: name the variable to evaluate")
    var = variable or names[0]
    if var not in names:
        raise KeyError(f"the prediction has no ensemble of {var!r}; it holds {names}")
    times = pred["time"].values
    units = pred[var].attrs.get("units")
    # the scores compare values: the truth and the stored inputs in the ensemble's units
    truth_da = _truth_variable(open_fields(truth), var, truth)
    _check_truth_grid(truth_da, pred, truth)
    missing = np.setdiff1d(times, truth_da["time"].values)
    if missing.size:
        raise ValueError(
            f"the truth {truth} lacks {missing.size} of the prediction's {len(times)} times "
            f"(first: {str(missing[0])[:19]})"
        )
    truth_da = to_units(truth_da.sel(time=times), units, f"the truth {var} in {truth}").load()
    gaps = (~np.isfinite(truth_da)).mean(("lat", "lon")).values
    if gaps.any():  # the scores leave those points out: say where, not only how many
        k = int(np.flatnonzero(gaps)[0])
        where = (
            f"the truth {truth} holds NaN at {int((gaps > 0).sum())} of the prediction's "
            f"{len(times)} times (first {str(times[k])[:16]}: {gaps[k]:.0%} of its points)"
        )
        if gaps.all():  # the spectra need one full field at least
            raise ValueError(f"{where}: the scores need a full field at one time at least")
        warnings.warn(
            f"{where}: those points are left out of every score", UserWarning, stacklevel=2
        )
    same = all(truth_da.sizes[d] == pred.sizes[d] for d in ("lat", "lon"))
    if same:
        on_pred = truth_da
    else:  # the edge points within half a spacing of the truth's (checked) at its edge
        inside = {
            a: np.clip(pred[a].values, float(truth_da[a].min()), float(truth_da[a].max()))
            for a in ("lat", "lon")
        }
        on_pred = truth_da.interp(inside)
    on_pred = on_pred.assign_coords(lat=pred.lat, lon=pred.lon)
    coarse = factor = None
    if f"{var}_coarse" in pred:
        coarse = to_units(pred[f"{var}_coarse"], units, f"the coarse field {var} in the store")
        coarse = coarse.rename({"coarse_lat": "lat", "coarse_lon": "lon"})
        if "coarse_lat_weight" in coarse.coords:
            coarse = coarse.rename({"coarse_lat_weight": "lat_weight"})
        for dim in ("lat", "lon"):  # the stored cells (a file's own CF bounds) for the baselines
            stored = pred.get(f"coarse_{dim}_bounds")
            if stored is not None:
                lower, upper = (name.format(dim=dim) for name in CELL_BOUND_COORDS)
                cells = np.sort(np.asarray(stored.values, dtype=np.float64), axis=1)
                coarse = coarse.assign_coords(
                    {lower: (dim, cells[:, 0]), upper: (dim, cells[:, 1])}
                )
        step = np.diff(coarse.lat.values).mean() / np.diff(truth_da.lat.values).mean()
        factor = round(float(step))
        grid = (truth_da.lat.values, truth_da.lon.values)
        if point_sampled(coarse) or not bl.is_coarse_grained_grid(coarse, *grid, max(factor, 1)):
            factor = None  # kriging and OI observe these cells (or points) as the model did
    stations = _stored_stations(pred, times, var)
    return DownscaleEvaluation(pred, var, truth_da, on_pred, coarse, factor, stations)


def kriging_baseline(ev: DownscaleEvaluation, checkpoint: str | None, seed: int = 0) -> dict:
    """Kriging of the stored inputs on the truth's grid, with a Matérn-1.5 kernel fitted
    on the model's training period: ``{"mean", "std", "kernel", "oi"}``. ``oi`` is the
    same update with the training fields' own covariance (optimal interpolation,
    :func:`hdm.metrics.baselines.fit_empirical_covariance`) as ``{"mean", "std",
    "fields"}``, where the truth is on the training grid, else None."""
    training = _training_fields(ev.prediction, ev.variable, checkpoint)
    kernel = bl.fit_kernel(training, seed=seed)
    st_lat = st_lon = st_vals = None
    station_noise = None
    if ev.stations is not None:
        _, st_lat, st_lon, st_vals = ev.stations
        station_noise = noise_std(ev.prediction.attrs, "station_noise_std", ev.variable)

    def update(prior) -> xr.Dataset:
        return bl.kriging_downscale(
            prior,
            ev.coarse,
            ev.truth.lat.values,
            ev.truth.lon.values,
            ev.factor,
            st_lat,
            st_lon,
            st_vals,
            noise_std_coarse=noise_std(ev.prediction.attrs, "coarse_noise_std", ev.variable),
            noise_std_station=station_noise,
            points=point_sampled(ev.coarse),
        )

    krig = update(kernel)
    oi = None
    coords = (training.lat.values, training.lon.values, ev.truth.lat.values, ev.truth.lon.values)
    if not bl.on_grid(*coords):
        log.info("no optimal-interpolation baseline: the truth is not on the training grid")
    else:
        try:
            covariance = bl.fit_empirical_covariance(training)
        except ValueError as exc:  # e.g. NaN in the training fields
            log.info("no optimal-interpolation baseline: %s", exc)
        else:
            fitted = update(covariance)
            oi = {"mean": fitted["mean"], "std": fitted["std"], "fields": covariance.n_fields}
    return {"mean": krig["mean"], "std": krig["std"], "kernel": kernel, "oi": oi}


#: land fraction at most / at least this: a sea / land point of the realism scores
SEA_MAX, LAND_MIN = 0.1, 0.9


def realism_scores(ens: xr.DataArray, truth: xr.DataArray) -> dict:
    """The speckle number (:func:`hdm.metrics.probabilistic.laplacian_ratio`) over sea
    and over land points (Natural Earth land fraction of each cell; coastal cells in
    between count in neither); None where the grid has no such point."""
    lf = xr.DataArray(
        static_field("land_fraction", truth.lat.values, truth.lon.values),
        dims=("lat", "lon"),
        coords={"lat": truth.lat, "lon": truth.lon},
    )
    out = {}
    for name, mask in (("sea", lf <= SEA_MAX), ("land", lf >= LAND_MIN)):
        ratio = float(pm.laplacian_ratio(ens, truth, mask)) if bool(mask.any()) else None
        out[f"laplacian_ratio_{name}"] = ratio
    return out


def _finite_or_none(score: xr.DataArray) -> float | None:
    """A scalar score as a float, None where it is NaN (unavailable: e.g. a coverage
    level the members cannot resolve, :func:`hdm.metrics.probabilistic.coverage`)."""
    value = float(score)
    return value if np.isfinite(value) else None


def _ensemble_scores(ev: DownscaleEvaluation, seed: int) -> dict:
    """The ensemble's own scores, with a bootstrap interval of the spread–skill ratio."""
    ens, mean, truth = ev.ensemble, ev.mean, ev.truth_on_pred
    report = {
        "rmse": float(pm.rmse(mean, truth)),
        "mae": float(pm.mae(mean, truth)),
        "bias": float(pm.bias(mean, truth)),
        "crps": float(pm.fair_crps(ens, truth)),
        "spread_skill": float(pm.spread_skill(ens, truth)),
        # None (null; unavailable) where the members cannot resolve the interval
        "coverage50": _finite_or_none(pm.coverage(ens, truth, 0.5)),
        "coverage90": _finite_or_none(pm.coverage(ens, truth, 0.9)),
        "rank_histogram": pm.rank_histogram(ens, truth, seed=seed).values.tolist(),
        "spectrum_ratio": float(pm.spectrum_ratio(ens, truth)),
        **realism_scores(ens, truth),
    }
    if len(ev.times) >= 2:
        # moving blocks of one day for the bootstrap intervals over time
        block = max(1, round(24 / max(1.0, _hours_between(ev.times))))
        _, low, high = pm.spread_skill_interval(ens, truth, block=block, seed=seed)
        report["spread_skill_ci95"] = None if low is None else [low, high]
    return report


def _gaussian_baselines(krig: dict) -> list[tuple[str, dict]]:
    """(name, {"mean", "std"}) of the Gaussian baselines :func:`kriging_baseline` made:
    kriging, and OI where it was scored."""
    return [("kriging", krig)] + ([("oi", krig["oi"])] if krig.get("oi") is not None else [])


def _interpolated(ev: DownscaleEvaluation, method: str) -> xr.DataArray:
    """The stored coarse values interpolated (``method``: bilinear, bicubic) onto the
    truth's grid: point values from their points, cell means from their cells' middles
    where the store keeps the cells (:func:`hdm.metrics.baselines.at_cell_middles`; as
    kriging and OI observe the cells), else from the coarse centres."""
    coarse = ev.coarse if point_sampled(ev.coarse) else bl.at_cell_middles(ev.coarse)
    return interpolate_coarse(coarse, ev.truth, method=method)


def _interpolation_scores(ev: DownscaleEvaluation) -> dict:
    """Bilinear and bicubic interpolation of the stored coarse values (any grid of them:
    cell means or points, :func:`_interpolated`) scored on the truth's grid."""
    truth = ev.truth
    report = {}
    for method in ("bilinear", "bicubic"):
        interp = _interpolated(ev, method)
        report[f"rmse_{method}"] = float(pm.rmse(interp, truth))
        # a point forecast's CRPS is its absolute error: the same scale as the others
        report[f"crps_{method}"] = float(pm.mae(interp, truth))
        if method == "bicubic":
            report["spectrum_ratio_bicubic"] = float(pm.spectrum_ratio(interp, truth))
    return report


def _baseline_scores(ev: DownscaleEvaluation, krig: dict, seed: int) -> dict:
    """Interpolation and kriging scores on the truth's grid, and the paired differences
    of the ensemble against kriging (moving-block intervals of one day)."""
    truth = ev.truth
    report = _interpolation_scores(ev)
    k_mean, k_std = krig["mean"], krig["std"]
    for name, base in _gaussian_baselines(krig):
        mean, std = base["mean"], base["std"]
        report[f"rmse_{name}"] = float(pm.rmse(mean, truth))
        report[f"crps_{name}"] = float(pm.gaussian_crps(mean, std, truth))
        report[f"coverage90_{name}"] = float(pm.gaussian_coverage(mean, std, truth, 0.9))
        report[f"spectrum_ratio_{name}"] = float(pm.spectrum_ratio(mean, truth))
    if krig.get("oi") is not None:
        report["oi_fields"] = krig["oi"]["fields"]
    kernel = krig["kernel"]
    report["kriging_kernel"] = {
        "kind": kernel.kind,
        "nu": kernel.nu,
        "lengthscale_deg": float(kernel.lengthscale),
        "variance": float(kernel.variance),
    }
    if ev.same_grid and ev.factor is not None:
        report["coarse_consistency"] = float(
            pm.coarse_consistency(
                ev.mean,
                ev.coarse,
                ev.factor,
                noise_std(ev.prediction.attrs, "coarse_noise_std", ev.variable),
            )
        )
    if ev.same_grid and len(ev.times) >= 2:
        space = ["lat", "lon"]
        block = max(1, round(24 / max(1.0, _hours_between(ev.times))))
        pairs = {
            "rmse_minus_kriging": (
                pm.rmse(ev.mean, truth, dim=space) ** 2,
                pm.rmse(k_mean, truth, dim=space) ** 2,
                True,
            ),
            "crps_minus_kriging": (
                pm.fair_crps(ev.ensemble, truth, dim=space),
                pm.gaussian_crps(k_mean, k_std, truth, dim=space),
                False,
            ),
        }
        for key, (a, b, root) in pairs.items():
            d, lo, hi = pm.paired_block_bootstrap(
                a.values, b.values, block=block, root=root, seed=seed
            )
            report[key] = {"diff": d, "ci95": None if lo is None else [lo, hi], "block": block}
    return report


def _heldout_scores(ev: DownscaleEvaluation, krig: dict | None, heldout: str | None) -> dict:
    """RMSE and CRPS at stations never conditioned on (of the ensemble and kriging)."""
    held = _heldout_stations(heldout)
    if held is None:
        return {}
    ids, lat, lon = held
    used = set(str(ev.prediction.attrs.get("stations", "")).split(","))
    overlap = sorted({str(i) for i in ids} & used)
    if overlap:
        raise ValueError(
            f"held-out station(s) {', '.join(overlap)} were used for conditioning; hold out "
            "stations the prediction was not conditioned on"
        )

    def at(field):
        return values_at_points(field, lat, lon, ids)

    truth = at(ev.truth)
    report = {
        "heldout_stations": [str(i) for i in ids],
        "heldout_rmse": float(pm.rmse(at(ev.mean), truth)),
        "heldout_crps": float(pm.fair_crps(at(ev.ensemble), truth)),
    }
    if krig is not None:
        for name, base in _gaussian_baselines(krig):
            mean, std = at(base["mean"]), at(base["std"])
            report[f"heldout_rmse_{name}"] = float(pm.rmse(mean, truth))
            report[f"heldout_crps_{name}"] = float(pm.gaussian_crps(mean, std, truth))
    return report


def score_downscale(
    ev: DownscaleEvaluation, krig: dict | None, heldout: str | None = None, seed: int = 0
) -> dict:
    """Every score of an ensemble and its baselines (SCIENCE.md §5) as a JSON-able dict."""
    report: dict = {
        "variable": ev.variable,
        "units": str(ev.ensemble.attrs.get("units", "")),
        "times": len(ev.times),
        "members": int(ev.ensemble.sizes["member"]),
        "grid": f"{ev.prediction.sizes['lat']} x {ev.prediction.sizes['lon']}",
        "truth_grid": f"{ev.truth.sizes['lat']} x {ev.truth.sizes['lon']}",
        "guidance": ev.prediction.attrs.get("guidance"),
        "inflation": float(ev.prediction.attrs.get("inflation", 1.0)),
        **_ensemble_scores(ev, seed),
    }
    if not ev.same_grid and (krig is not None or ev.coarse is not None):
        warnings.warn(
            f"the truth's grid ({report['truth_grid']}) is not the prediction's "
            f"({report['grid']}): the ensemble is scored at its own points (the truth "
            "interpolated there), the baselines on the truth's grid, so their scores are "
            "not paired point for point (OI, the coarse consistency and the paired "
            "differences are left out); give the truth on the prediction's grid to compare "
            "them",
            UserWarning,
            stacklevel=2,
        )
    if krig is not None:
        report.update(_baseline_scores(ev, krig, seed))
    elif ev.coarse is not None:  # a coarse grid the Gaussian baselines are not built for
        report.update(_interpolation_scores(ev))
    report.update(_heldout_scores(ev, krig, heldout))
    report.update(best_baselines(report))
    return report


#: the baselines a best-baseline column chooses from: interpolation of the coarse field,
#: kriging with a stationary kernel, optimal interpolation with the training covariance
BASELINES = ("bilinear", "bicubic", "kriging", "oi")


def best_baselines(report: dict) -> dict:
    """For each score a baseline has, the best baseline's name and value:
    ``best_baseline_rmse``, ``best_baseline_crps``, ``best_baseline_heldout_rmse``
    (lower is better; absent where no baseline was scored)."""
    best = {}
    for score in ("rmse", "crps", "heldout_rmse"):
        scored = {b: report[f"{score}_{b}"] for b in BASELINES if f"{score}_{b}" in report}
        if scored:
            name = min(scored, key=scored.get)
            best[f"best_baseline_{score}"] = {"baseline": name, "value": scored[name]}
    return best


def plot_downscale_scores(
    ev: DownscaleEvaluation, krig: dict | None, report: dict, prefix: str | Path
) -> list[str]:
    """``PREFIX_rank_histogram.png``, ``PREFIX_spectra.png`` and (two members or more)
    ``PREFIX_spread_skill.png``; adds the binned spread–skill values to ``report``."""
    prefix = str(prefix)
    truth, ens = ev.truth_on_pred, ev.ensemble
    spectra = {"truth": pm.power_spectrum(truth), "hdm members": pm.power_spectrum(ens)}
    if krig is not None:
        bicubic = _interpolated(ev, "bicubic")
        spectra["bicubic"] = pm.power_spectrum(bicubic)
        spectra["kriging mean"] = pm.power_spectrum(krig["mean"])
        if krig.get("oi") is not None:
            spectra["OI mean"] = pm.power_spectrum(krig["oi"]["mean"])
    plots = [
        plot_rank_histogram(f"{prefix}_rank_histogram.png", report["rank_histogram"]),
        plot_spectra(f"{prefix}_spectra.png", spectra, title=f"{ev.variable} power spectra"),
    ]
    if report["members"] >= 2:
        # per-point spread and error of the members' mean, area-weighted like
        # pm.spread_skill (a NaN member or truth leaves the point out)
        spread = ens.std("member", ddof=1, skipna=False)
        error = (ens.mean("member", skipna=False) - truth).transpose(*spread.dims)
        weights = xr.broadcast(lat_weights(truth), spread)[0].transpose(*spread.dims)
        kw = {"members": report["members"], "weights": weights.values}
        bins = spread_skill_bins(spread.values, error.values, **kw)
        report["spread_skill_bins"] = {
            "spread": bins.spread.tolist(),
            "rmse": bins.rmse.tolist(),
            "count": bins.count.tolist(),
        }
        title = f"{ev.variable} spread–skill ({len(ev.times)} times)"
        plots.append(
            plot_spread_skill(
                f"{prefix}_spread_skill.png",
                spread.values,
                error.values,
                units=report["units"],
                title=title,
                **kw,
            )
        )
    return [str(p) for p in plots]


def evaluate_downscale(
    prediction: str | Path | xr.Dataset,
    truth: str | Path,
    *,
    heldout: str | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    plots_prefix: str | Path | None = None,
) -> dict:
    """Scores of a downscaled ensemble against the truth and the baselines (SCIENCE.md §5):
    per variable :func:`read_downscale`, :func:`kriging_baseline`, :func:`score_downscale`,
    and with ``plots_prefix`` :func:`plot_downscale_scores` (``PREFIX_VAR_...`` when the
    store holds several variables) and, last, the whole report as ``PREFIX_metrics.json``
    (its path in ``report["metrics_json"]``), written atomically. The report of a
    one-variable store holds its scores at the top level; with several variables, the
    scores of each are under ``report["variables"][VAR]``.

    The truth is read for the prediction's times; when the prediction is on a finer grid
    than the truth (zero-shot super-resolution), the truth is interpolated (bilinear)
    onto it for the model's scores, and the baselines are scored on the truth's grid.
    Kriging uses the coarse field and the conditioning stations stored in the
    prediction, with a Matérn-1.5 kernel fitted on the model's training period; optimal
    interpolation ("oi") the same inputs with the training fields' own covariance, where
    the truth is on the training grid. A prediction without its coarse input
    (``{var}_coarse``) has no baseline scored, said in one warning.

    ``prediction``: a store path, or the dataset of :func:`hdm.downscale` (in memory).
    """
    pred = open_prediction(prediction)
    names = pred.attrs["hdm_variables"]
    reports = {}
    for var in names:
        ev = read_downscale(pred, truth, var)
        if ev.coarse is None:
            warnings.warn(
                f"the prediction holds no coarse input ({var}_coarse: a run without a "
                "coarse field, or a file written without its inputs): baselines are not "
                "scored",
                stacklevel=2,
            )
        krig = kriging_baseline(ev, checkpoint, seed) if ev.coarse is not None else None
        report = score_downscale(ev, krig, heldout, seed)
        if plots_prefix is not None:
            prefix = plots_prefix if len(names) == 1 else f"{plots_prefix}_{var}"
            report["plots"] = plot_downscale_scores(ev, krig, report, prefix)
        reports[var] = report
    if len(names) == 1:
        report = reports[names[0]]
    else:
        first = reports[names[0]]
        common = ("times", "members", "grid", "truth_grid", "guidance", "inflation")
        report = {key: first[key] for key in common}
        report["variables"] = reports
        report["plots"] = [p for r in reports.values() for p in r.get("plots", [])]
    if plots_prefix is not None:
        metrics = Path(f"{plots_prefix}_metrics.json")
        report["metrics_json"] = str(metrics)
        write_json_atomic(report, metrics)
    return report


def write_json_atomic(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON via a temporary file in the same folder and
    ``os.replace``, so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
