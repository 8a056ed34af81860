"""Does the UK ensemble's spread follow its error from one time to the next?

A pooled spread–skill below 1 can come from a spread that is too small everywhere or from
one that stays the same while the error changes with the weather. This study reads
downscaled stores (``python -m benchmarks uk_evaluation --work DIR`` writes them) and the
ERA5 truth and reports, per store:

- the error of the ensemble mean e_t = RMSE over the grid at time t (area-weighted,
  :func:`hdm.metrics.probabilistic.rmse`) and the spread s_t = ss_t · e_t, with ss_t the
  spread–skill at that time (:func:`hdm.metrics.probabilistic.spread_skill`, the fair
  √((M+1)/M) factor included), so that ss_t = s_t / e_t;
- the least-squares slope b of log s_t on log e_t and their correlation: b = 1 is a spread
  that grows in proportion to the error (a ratio that is the same every time), b = 0 one
  that is the same at every time whatever the error;
- the pooled spread–skill √(mean s_t² / mean e_t²) by hour of day (UTC).

The truth's own variability below the coarse cells, RMS of truth − bilinear interpolation
of its coarse field (:func:`benchmarks.uk.coarse_interpolated`, data only), is given by
hour of day for the store's times and for the prior's training days (the config's
``data.train_start`` .. ``data.train_end``): how much rougher the store's hours are than
those the prior learned. Run

    python -m benchmarks uk_spread_by_time STORE [STORE ...]

It writes section ``uk-spread-by-time`` of BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from benchmarks.report import (
    BENCHMARKS_FILE,
    PROJECT_ROOT,
    command_line,
    machine_description,
    parser,
    write_section,
)
from benchmarks.uk import UK, coarse_interpolated
from hdm.data.open import open_fields
from hdm.data.stores import open_store
from hdm.metrics import probabilistic as pm

VARIABLE = "t2m"


def _factor(store: Path, ds: xr.Dataset) -> int:
    """The coarse factor of a store: its fine over its coarse latitude count, rounded."""
    if f"{VARIABLE}_coarse" not in ds:
        raise SystemExit(f"{store} has no {VARIABLE}_coarse: not a store of uk_evaluation")
    return round((ds.sizes["lat"] - 1) / ds.sizes["coarse_lat"])


def _hourly_subcoarse_rms(truth: xr.DataArray, factor: int) -> dict[int, float]:
    """RMS (K) of truth − bilinear interpolation of its ×factor coarse field, by UTC hour."""
    per_time = pm.rmse(coarse_interpolated(truth, factor), truth, dim=["lat", "lon"])
    by_hour = np.sqrt((per_time**2).groupby("time.hour").mean())
    return {int(h): float(v) for h, v in zip(by_hour["hour"].values, by_hour.values)}


def store_row(store: Path, training: xr.DataArray) -> dict:
    """The per-time error and spread of one store, summarised (module doc)."""
    ds = open_store(store)
    factor = _factor(store, ds)
    members = ds[VARIABLE].load()
    truth = open_fields(UK.resolved_path(), VARIABLE)[VARIABLE].sel(time=ds["time"].values)
    truth = truth.load()
    error = pm.rmse(members.mean("member"), truth, dim=["lat", "lon"]).values
    ratio = pm.spread_skill(members, truth, dim=["lat", "lon"]).values
    spread = ratio * error
    log_e, log_s = np.log(error), np.log(spread)
    hours = truth["time"].dt.hour.values
    by_hour = {
        int(h): float(np.sqrt(np.mean(spread[hours == h] ** 2) / np.mean(error[hours == h] ** 2)))
        for h in np.unique(hours)
    }
    return {
        "store": store.name,
        "factor": factor,
        "stations": store.stem.rsplit("_", 1)[-1],
        "times": len(error),
        "pooled": float(np.sqrt(np.mean(spread**2) / np.mean(error**2))),
        "slope": float(np.polyfit(log_e, log_s, 1)[0]),
        "correlation": float(np.corrcoef(log_e, log_s)[0, 1]),
        "error_range": (float(error.min()), float(error.max())),
        "spread_range": (float(spread.min()), float(spread.max())),
        "by_hour": by_hour,
        "truth_rough": _hourly_subcoarse_rms(truth, factor),
        "training_rough": _hourly_subcoarse_rms(training, factor),
    }


def training_fields() -> xr.DataArray:
    """The shipped prior's training fields (the dataset's training period), every hour."""
    fields = open_fields(UK.resolved_path(), VARIABLE)[VARIABLE]
    return fields.sel(time=slice(*UK.train)).load()


def format_section(rows: list[dict]) -> str:
    """Section ``uk-spread-by-time``."""
    hours = sorted({h for r in rows for h in r["by_hour"]})
    head = " | ".join(f"ss {h:02d} UTC" for h in hours)
    lines = []
    for r in rows:
        cells = " | ".join(f"{r['by_hour'].get(h, float('nan')):.2f}" for h in hours)
        (e0, e1), (s0, s1) = r["error_range"], r["spread_range"]
        lines.append(
            f"| `{r['store']}` | ×{r['factor']} | {r['stations']} | {r['times']} | "
            f"{r['pooled']:.3f} | {r['slope']:.2f} | {r['correlation']:.2f} | "
            f"{e0:.3f}–{e1:.3f} ({e1 / e0:.1f}×) | {s0:.3f}–{s1:.3f} ({s1 / s0:.1f}×) | {cells} |"
        )
    rough = []
    for factor in sorted({r["factor"] for r in rows}):
        r = next(r for r in rows if r["factor"] == factor)
        cells = " | ".join(
            f"{r['truth_rough'].get(h, float('nan')):.2f} / {r['training_rough'][h]:.2f}"
            for h in hours
        )
        rough.append(f"| ×{factor} | {cells} |")
    sep = "|---" * (9 + len(hours)) + "|"
    return f"""## UK t2m: does the spread follow the error from time to time?

Per time t: the error of the ensemble mean e_t (RMSE over the grid, K) and the spread s_t
(fair RMS spread, K); the slope and the correlation of log s_t on log e_t (slope 1: the
spread grows in proportion to the error; 0: the same spread whatever the error); the pooled
spread–skill over all times and by hour of day (UTC).

| store | coarse | stations | times | spread–skill | slope | corr. | e_t | s_t | {head} |
{sep}
{chr(10).join(lines)}

The truth's variability below the coarse cells (RMS of truth − bilinear interpolation of its
coarse field, K, data only) by hour of day: the stores' times / the prior's training days
(every hour of its training period).

| coarse | {" | ".join(f"{h:02d} UTC" for h in hours)} |
{"|---" * (1 + len(hours)) + "|"}
{chr(10).join(rough)}
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_spread_by_time STORE [STORE ...]``."""
    p = parser("uk_spread_by_time", __doc__)
    p.add_argument("stores", nargs="+", type=Path)
    args = p.parse_args(list(argv))
    for store in args.stores:
        if not store.exists():
            p.error(f"{store} does not exist: run `python -m benchmarks uk_evaluation --work DIR`")
    machine = machine_description()
    training = training_fields()
    rows = [store_row(store, training) for store in args.stores]
    shown = []
    for store in args.stores:
        full = store.resolve()
        inside = full.is_relative_to(PROJECT_ROOT)
        shown.append(str(full.relative_to(PROJECT_ROOT) if inside else full))
    if args.benchmarks_file != BENCHMARKS_FILE:
        shown += ["--benchmarks-file", str(args.benchmarks_file)]
    write_section(
        args.benchmarks_file,
        "uk-spread-by-time",
        format_section(rows),
        command=command_line("uk_spread_by_time", shown),
        machine=machine,
    )
    return rows
