"""``hdm evaluate functional``: generated curves against the real held-out curves.

Generated curves are compared with the dataset's *test* split; the dataset's *valid*
split (real curves never trained on) gives the real-vs-real floors and the null
calibration of the power test (see :mod:`hdm.metrics.two_sample`). Curves sampled on
another grid than the dataset's are linearly interpolated onto the dataset's points.
"""

from __future__ import annotations

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
