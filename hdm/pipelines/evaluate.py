"""``hdm evaluate functional``: generated curves against the real held-out curves.

Generated curves are compared with the dataset's *test* split; the dataset's *valid*
split (real curves never trained on) gives the real-vs-real floors and the null
calibration of the power test (see :mod:`hdm.metrics.two_sample`). Curves sampled on
another grid than the dataset's are linearly interpolated onto the dataset's points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.domains.functional import curves, load_functional
from hdm.metrics.two_sample import functional_report


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
    from hdm.plotting import plot_functions

    samples = open_samples(samples_path)
    ds = load_functional(dataset, seed=int(samples.attrs.get("data_seed", 0)))
    generated, _ = on_dataset_grid(samples["y"], ds["x"].values)
    return plot_functions(
        png,
        ds["x"].values,
        generated,
        curves(ds, "test").values,
        title=f"{dataset}: generated vs real",
        x_label=ds.attrs.get("x_units", "x"),
    )


# ------------------------------------------------------------------ downscaling


def open_prediction(path: str | Path) -> xr.Dataset:
    """A store written by ``hdm downscale`` (zarr or netCDF), with its variable named."""
    from hdm.data.stores import open_store

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prediction store {path} does not exist")
    ds = open_store(path).load()
    names = [n for n in ds.data_vars if f"{n}_mean" in ds.data_vars]
    if len(names) != 1 or "member" not in ds[names[0]].dims:
        raise ValueError(
            f"{path} is not an hdm downscale output (a variable with 'member' and its "
            f"'_mean'); variables: {list(ds.data_vars)}"
        )
    ds.attrs["hdm_variable"] = names[0]
    return ds


def _heldout_stations(spec: str | None):
    """Held-out station coordinates: IGRA2 ids (comma-separated) or a CSV table."""
    if not spec:
        return None
    from hdm.domains.stations import first_occurrences, parse_ids, read_stations, stations_by_id

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
    from hdm.domains.atmosphere import open_split, training_spec
    from hdm.hilbert.checkpoints import load_checkpoint

    path = Path(checkpoint or prediction.attrs.get("checkpoint", ""))
    if not path.is_file():
        raise FileNotFoundError(
            f"the model checkpoint {str(path)!r} (needed to fit the kriging kernel on its "
            "training period) was not found; pass --checkpoint"
        )
    spec = training_spec(load_checkpoint(path).get("metadata", {}))
    return open_split(spec, "train")[variable].load()


def _hours_between(times: np.ndarray) -> float:
    """Median spacing of the times, hours."""
    if len(times) < 2:
        return 1.0
    return float(np.median(np.diff(times.astype("datetime64[s]").astype(np.int64))) / 3600)


def evaluate_downscale(
    prediction: str | Path,
    truth: str | Path,
    *,
    heldout: str | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    plots_prefix: str | Path | None = None,
) -> dict:
    """Scores of a downscaled ensemble against the truth and the baselines (SCIENCE.md §5).

    The truth is read for the prediction's times; when the prediction is on a finer grid
    than the truth (zero-shot super-resolution), the truth is interpolated (bilinear)
    onto it for the model's scores, and the baselines are scored on the truth's grid.
    Kriging uses the coarse field and the conditioning stations stored in the
    prediction, with a Matérn-1.5 kernel fitted on the model's training period.
    With ``plots_prefix``, writes ``PREFIX_rank_histogram.png``, ``PREFIX_spectra.png``
    and ``PREFIX_spread_skill.png`` (their paths in ``report["plots"]``, the binned
    spread–skill values in ``report["spread_skill_bins"]``) and, last, the whole report
    as ``PREFIX_metrics.json`` (its path in ``report["metrics_json"]``), each written
    atomically.
    """
    from hdm.data.open import open_fields
    from hdm.metrics import baselines as bl
    from hdm.metrics import probabilistic as pm

    pred = open_prediction(prediction)
    var = pred.attrs["hdm_variable"]
    ens, mean = pred[var], pred[f"{var}_mean"]
    times = pred["time"].values
    truth_da = open_fields(truth, var)[var].sel(time=times).load()
    if truth_da.sizes["time"] != len(times):
        raise ValueError(f"the truth {truth} lacks some of the prediction's times")
    same_grid = (
        truth_da.sizes["lat"] == pred.sizes["lat"] and truth_da.sizes["lon"] == pred.sizes["lon"]
    )
    truth_on_pred = truth_da if same_grid else truth_da.interp(lat=pred.lat, lon=pred.lon)
    truth_on_pred = truth_on_pred.assign_coords(lat=pred.lat, lon=pred.lon)
    report: dict = {
        "variable": var,
        "units": str(ens.attrs.get("units", "")),
        "times": len(times),
        "members": int(ens.sizes["member"]),
        "grid": f"{pred.sizes['lat']} x {pred.sizes['lon']}",
        "truth_grid": f"{truth_da.sizes['lat']} x {truth_da.sizes['lon']}",
        "guidance": pred.attrs.get("guidance"),
        "inflation": float(pred.attrs.get("inflation", 1.0)),
        "rmse": pm.rmse(mean, truth_on_pred),
        "mae": pm.mae(mean, truth_on_pred),
        "bias": pm.bias(mean, truth_on_pred),
        "crps": pm.fair_crps(ens, truth_on_pred),
        "spread_skill": pm.spread_skill(ens, truth_on_pred),
        "coverage50": pm.coverage(ens, truth_on_pred, 0.5),
        "coverage90": pm.coverage(ens, truth_on_pred, 0.9),
        "rank_histogram": pm.rank_histogram(ens, truth_on_pred, seed=seed).tolist(),
        "spectrum_ratio": pm.spectrum_ratio(ens, truth_on_pred),
    }
    if len(times) >= 2:
        # Moving blocks of one day for the bootstrap intervals over time.
        block = max(1, round(24 / max(1.0, _hours_between(times))))
        _, low, high = pm.spread_skill_interval(ens, truth_on_pred, block=block, seed=seed)
        report["spread_skill_ci95"] = [low, high]
    coarse_name = f"{var}_coarse"
    if coarse_name in pred:
        coarse = pred[coarse_name].rename({"coarse_lat": "lat", "coarse_lon": "lon"})
        if "coarse_lat_weight" in coarse.coords:
            coarse = coarse.rename({"coarse_lat_weight": "lat_weight"})
        factor = round(
            float(np.diff(coarse.lat.values).mean() / np.diff(truth_da.lat.values).mean())
        )
        coarse_noise = float(pred.attrs.get("coarse_noise_std", 0.1))
        if same_grid:
            report["coarse_consistency"] = pm.coarse_consistency(mean, coarse, factor, coarse_noise)
        for method in ("bilinear", "bicubic"):
            interp = bl.interpolate_coarse(coarse, truth_da, method=method)
            report[f"rmse_{method}"] = pm.rmse(interp, truth_da)
        report["spectrum_ratio_bicubic"] = pm.spectrum_ratio(
            bl.interpolate_coarse(coarse, truth_da, method="bicubic"), truth_da
        )
        kernel = bl.fit_kernel(_training_fields(pred, var, checkpoint), seed=seed)
        st_lat = st_lon = st_vals = None
        station_noise = None
        if "station_obs" in pred:
            obs = pred["station_obs"]
            from hdm.domains.stations import first_occurrences

            ids = obs["obs_id"].values.astype(str)
            order = first_occurrences(ids)
            uniq = ids[order]
            st_lat = obs["obs_lat"].values[order]
            st_lon = obs["obs_lon"].values[order]
            table = np.full((len(times), len(uniq)), np.nan)
            col = {s: k for k, s in enumerate(uniq)}
            tindex = {t: i for i, t in enumerate(times.astype("datetime64[ns]"))}
            for k in range(obs.sizes["obs"]):
                i = tindex.get(obs["obs_time"].values[k].astype("datetime64[ns]"))
                if i is not None:
                    table[i, col[ids[k]]] = float(obs.values[k])
            st_vals = xr.DataArray(table, dims=("time", "station"), coords={"time": times})
            station_noise = float(pred.attrs.get("station_noise_std", 0.5))
        krig = bl.kriging_downscale(
            kernel,
            coarse,
            truth_da.lat.values,
            truth_da.lon.values,
            factor,
            st_lat,
            st_lon,
            st_vals,
            noise_std_coarse=coarse_noise,
            noise_std_station=station_noise,
        )
        k_mean, k_std = krig["mean"], krig["std"]
        report["rmse_kriging"] = pm.rmse(k_mean, truth_da)
        report["crps_kriging"] = pm.gaussian_crps(k_mean, k_std, truth_da)
        report["coverage90_kriging"] = pm.gaussian_coverage(k_mean, k_std, truth_da, 0.9)
        report["spectrum_ratio_kriging"] = pm.spectrum_ratio(k_mean, truth_da)
        # Paired differences against kriging with moving-block (one day) bootstrap intervals.
        if len(times) >= 2:
            per_time = {"mse": [], "mse_k": [], "crps": [], "crps_k": []}
            for i in range(len(times)):
                tr = truth_da.isel(time=i)
                tr_pred = truth_on_pred.isel(time=i)
                if same_grid:
                    per_time["mse"].append(pm.rmse(mean.isel(time=i), tr_pred) ** 2)
                    per_time["crps"].append(pm.fair_crps(ens.isel(time=i), tr_pred))
                per_time["mse_k"].append(pm.rmse(k_mean.isel(time=i), tr) ** 2)
                per_time["crps_k"].append(
                    pm.gaussian_crps(k_mean.isel(time=i), k_std.isel(time=i), tr)
                )
            if same_grid:
                d, lo, hi = pm.paired_block_bootstrap(
                    per_time["mse"], per_time["mse_k"], block=block, root=True, seed=seed
                )
                report["rmse_minus_kriging"] = {"diff": d, "ci95": [lo, hi], "block": block}
                d, lo, hi = pm.paired_block_bootstrap(
                    per_time["crps"], per_time["crps_k"], block=block, seed=seed
                )
                report["crps_minus_kriging"] = {"diff": d, "ci95": [lo, hi], "block": block}
        report["kriging_kernel"] = {
            "kind": kernel.kind,
            "nu": kernel.nu,
            "lengthscale_deg": float(kernel.lengthscale),
            "variance": float(kernel.variance),
        }
    if plots_prefix is not None:
        from hdm.data.schema import lat_weights
        from hdm.plotting import (
            plot_rank_histogram,
            plot_spectra,
            plot_spread_skill,
            spread_skill_bins,
        )

        prefix = str(plots_prefix)
        spectra = {"truth": pm.power_spectrum(truth_on_pred), "hdm members": pm.power_spectrum(ens)}
        if coarse_name in pred:
            spectra["bicubic"] = pm.power_spectrum(
                bl.interpolate_coarse(coarse, truth_da, method="bicubic")
            )
            spectra["kriging mean"] = pm.power_spectrum(k_mean)
        report["plots"] = [
            str(plot_rank_histogram(f"{prefix}_rank_histogram.png", report["rank_histogram"])),
            str(plot_spectra(f"{prefix}_spectra.png", spectra, title=f"{var} power spectra")),
        ]
        if report["members"] >= 2:
            # Per-point spread and error of the members' mean, area-weighted like
            # pm.spread_skill (a NaN member or truth leaves the point out).
            spread = ens.std("member", ddof=1, skipna=False)
            error = (ens.mean("member", skipna=False) - truth_on_pred).transpose(*spread.dims)
            weights = xr.broadcast(lat_weights(truth_on_pred), spread)[0].transpose(*spread.dims)
            bins = spread_skill_bins(
                spread.values, error.values, report["members"], weights=weights.values
            )
            report["spread_skill_bins"] = {
                "spread": bins.spread.tolist(),
                "rmse": bins.rmse.tolist(),
                "count": bins.count.tolist(),
            }
            report["plots"].append(
                str(
                    plot_spread_skill(
                        f"{prefix}_spread_skill.png",
                        spread.values,
                        error.values,
                        members=report["members"],
                        weights=weights.values,
                        units=report["units"],
                        title=f"{var} spread–skill ({len(times)} times)",
                    )
                )
            )
    held = _heldout_stations(heldout)
    if held is not None:
        ids, lat, lon = held
        used = set(str(pred.attrs.get("stations", "")).split(","))
        overlap = sorted(set(ids) & used)
        if overlap:
            raise ValueError(f"held-out station(s) {overlap} were used for conditioning")
        truth_st = pm.station_values(truth_da, lat, lon, ids)
        report["heldout_stations"] = list(ids)
        report["heldout_rmse"] = pm.point_rmse(pm.station_values(mean, lat, lon, ids), truth_st)
        report["heldout_crps"] = pm.point_fair_crps(pm.station_values(ens, lat, lon, ids), truth_st)
        if "rmse_kriging" in report:
            report["heldout_rmse_kriging"] = pm.point_rmse(
                pm.station_values(k_mean, lat, lon, ids), truth_st
            )
            report["heldout_crps_kriging"] = pm.point_gaussian_crps(
                pm.station_values(k_mean, lat, lon, ids),
                pm.station_values(k_std, lat, lon, ids),
                truth_st,
            )
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
