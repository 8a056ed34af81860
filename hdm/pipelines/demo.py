"""``make demo`` / ``hdm demo``: the main job on the shipped data and models.

``hdm demo`` (the downscaling demo): one day of the UK t2m test week (2019-03-28, every
6 hours), the ERA5 field coarse-grained ×4 plus simulated observations at 12 IGRA2 station
coordinates, 16 members from the shipped prior with the defaults of ``hdm downscale``
(MMPS, Heun 25 steps, no inflation: on the validation split the stations'
λ is 1.0, BENCHMARKS.md "uk-validation-inflation"); writes ``uk_t2m_2019-03-28.zarr``,
maps (PNG) and ``uk_t2m_2019-03-28_metrics.json``, and prints the scores beside
bilinear, bicubic and kriging, with 4 stations held out.

``hdm demo --functional``: for each functional dataset, sample curves from the shipped
model, evaluate them against the real held-out curves, and write ``NAME-samples.nc``,
``NAME-metrics.json`` and ``NAME.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.functional import DATASETS, curves, load_functional
from hdm.domains.shipped import shipped_checkpoint
from hdm.pipelines.evaluate import evaluate_downscale, evaluate_functional, on_dataset_grid
from hdm.pipelines.job import run_downscale
from hdm.pipelines.report import format_downscale_report, format_functional_report
from hdm.pipelines.sample import sample, write_netcdf
from hdm.plotting import axis_label, plot_functions


def run_downscale_demo(
    out: Path,
    members: int = 16,
    day: str = "2019-03-28",
    steps: int = 25,
    sampler: str = "heun",
    inflation: str | None = None,
) -> list[Path]:
    """The downscaling demo (see the module docstring)."""
    uk = GRIDDED_DATASETS["uk_t2m"]
    model = shipped_checkpoint("uk_t2m")
    out.mkdir(parents=True, exist_ok=True)
    truth = uk.resolved_path()
    store = out / f"uk_t2m_{day}.zarr"
    t0 = time.perf_counter()
    summary = run_downscale(
        model,
        store,
        truth=str(truth),
        factor=4,
        simulate_stations=list(uk.conditioning_stations),
        members=members,
        times=(f"{day}T00", f"{day}T18"),
        every=6,
        sampler=sampler,
        steps=steps,
        inflation=inflation,
        overwrite=True,
    )
    report = evaluate_downscale(
        store, truth, heldout=",".join(uk.heldout_stations), plots_prefix=out / f"uk_t2m_{day}"
    )
    metrics = Path(report["metrics_json"])  # written by evaluate_downscale with the plots
    print(format_downscale_report(report))
    print(f"  ({time.perf_counter() - t0:.0f} s)\n")
    written = [store, metrics, *map(Path, summary["pngs"]), *map(Path, report["plots"])]
    print(f"demo outputs in {out.resolve()}:")
    for path in written:
        print(f"  {path}")
    return written


def run_demo(out: Path, n: int = 500) -> list[Path]:
    """The functional demo (``hdm demo --functional``)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DATASETS:
        model = shipped_checkpoint(name)
        t0 = time.perf_counter()
        ds = sample(model, n=n, sampler="heun", steps=25, seed=0)
        samples = write_netcdf(ds, out / f"{name}-samples.nc")
        report = evaluate_functional(name, samples)
        data = load_functional(name, seed=int(ds.attrs["data_seed"]))
        generated, _ = on_dataset_grid(ds["y"], data["x"].values)
        plot = plot_functions(
            out / f"{name}.png",
            data["x"].values,
            generated,
            curves(data, "test").values,
            title=f"{name}: {n} generated curves vs real test curves",
            x_label=axis_label("x", data.attrs.get("x_units")),
            y_label=axis_label("y", data.attrs.get("y_units")),
        )
        report["plot"] = str(plot)
        metrics = out / f"{name}-metrics.json"
        metrics.write_text(json.dumps(report, indent=1))
        print(format_functional_report(report))
        print(f"  ({time.perf_counter() - t0:.0f} s)\n")
        written += [samples, metrics, plot]
    print(f"demo outputs in {out.resolve()}:")
    for path in written:
        print(f"  {path}")
    return written
