"""``make demo`` / ``hdm demo``: the functional job on the shipped data and checkpoints.

For each functional dataset: sample curves from the shipped model
(``data/checkpoints/NAME/model.pt``), evaluate them against the real held-out curves,
and write ``NAME-samples.nc``, ``NAME-metrics.json`` and ``NAME.png`` into the output
folder. (When the downscaling pipeline lands, the demo becomes a downscaling run.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hdm.domains.functional import curves, load_functional
from hdm.pipelines.benchmark import DATASETS, PROJECT_ROOT
from hdm.pipelines.evaluate import evaluate_functional, on_dataset_grid
from hdm.pipelines.sample import sample_checkpoint, write_netcdf
from hdm.plotting import plot_functions


def run_demo(out: Path, n: int = 500) -> list[Path]:
    from hdm.pipelines.cli import format_report

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DATASETS:
        model = PROJECT_ROOT / "data" / "checkpoints" / name / "model.pt"
        t0 = time.perf_counter()
        ds = sample_checkpoint(model, n=n, sampler="heun", steps=25, seed=0)
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
            x_label=f"x ({data.attrs.get('x_units', '')})",
            y_label=f"y ({data.attrs.get('y_units', '')})",
        )
        report["plot"] = str(plot)
        metrics = out / f"{name}-metrics.json"
        metrics.write_text(json.dumps(report, indent=1))
        print(format_report(report))
        print(f"  ({time.perf_counter() - t0:.0f} s)\n")
        written += [samples, metrics, plot]
    print(f"demo outputs in {out.resolve()}:")
    for path in written:
        print(f"  {path}")
    return written
