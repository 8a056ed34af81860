"""``hdm sample CHECKPOINT``: draw functions from a trained model, on any resolution.

The output holds ``y(sample, x)`` in the data's units (for a gridded model,
``{var}(sample, [level,] lat, lon)`` on its training grid: :func:`sample_fields`) and provenance
attributes (checkpoint and its sha256, sampler, steps, NFE, seed, hdm version, time). Its
format follows the suffix of ``--out`` (:func:`write_samples`): ``.nc`` a netCDF file,
``.zarr`` a zarr store; an existing output is replaced only with ``--overwrite``. It is
written under a temporary name and renamed, so a failed run leaves nothing behind. Both
carry the CF-1.8 attributes of every hdm store (:func:`cf_samples`, which uses
:func:`hdm.data.stores.cf_output` as the downscale writer does): ``Conventions``, lat/lon
axes with cell bounds, ``level`` in hPa, ``sample`` described, ``hdm_*`` provenance.

Called from Python, :func:`sample` has the command's defaults (:data:`SAMPLE_SAMPLER`,
:data:`SAMPLE_STEPS`); its errors name the argument and, in parentheses, the flag.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from hdm._version import __version__
from hdm.conditioning.ensembles import RUNAWAY_BOUND, check_members, checked_bound, draw_members
from hdm.data.normalization import ScalarNormaliser
from hdm.data.stores import cf_output, consolidate, zarr_extensions
from hdm.downscaling.output import training_grid_attrs
from hdm.downscaling.prior import load_prior, model_path, target_grid
from hdm.hilbert.checkpoints import (
    denoiser_from_checkpoint,
    file_sha256,
    load_checkpoint,
    load_gaussian,
    load_model_statistics,
    required_model_statistics,
    teleport_statistics,
)
from hdm.hilbert.devices import resolve_device, seeded_generator
from hdm.hilbert.gaussian import GaussianStart
from hdm.hilbert.grids import GlobalGrid, Grid, LatLonGrid
from hdm.hilbert.networks import GridError
from hdm.hilbert.sampling import NEEDS_STATISTICS, make_sampler

#: the sampler and steps of ``hdm sample`` (and of :func:`sample`) when none are given
SAMPLE_SAMPLER = "heun"
SAMPLE_STEPS = 50


def sampling_grid(trained: Grid, points: int | None) -> Grid:
    """The training grid, or the same domain with ``points`` points."""
    if points is None:
        return trained
    if points < 4:
        raise GridError(f"points (--points) must be at least 4, got {points}")
    if trained.ndim != 1:
        raise GridError(f"points (--points) applies to 1-D models; this model is {trained.ndim}-D")
    return trained.with_resolution(points)


def unconditional_start(checkpoint, denoiser, grid: Grid, teleport: float | str) -> GaussianStart:
    """The teleported start of ``hdm sample``: the model's Gaussian statistics
    (``gaussian.pt`` beside it) at ς* ("auto": the measured one), checked."""
    stats, level = teleport_statistics(load_gaussian(checkpoint), checkpoint, teleport)
    stats.check_grid(grid, f"the Gaussian statistics of {checkpoint}")
    return GaussianStart(stats, denoiser.process, level)


def sample(
    checkpoint: str | Path,
    *,
    n: int,
    sampler: str = SAMPLE_SAMPLER,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    points: int | None = None,
    batch_size: int = 1000,
    progress: bool = True,
    teleport: float | str | None = None,
    device: str = "cpu",
    scale: int = 1,
    runaway_bound: float | str | None = RUNAWAY_BOUND,
    small_scale_level: float | None = None,
) -> xr.Dataset:
    """Draw ``n`` functions; returns ``y(sample, x)`` in the data's physical units (a
    gridded model: :func:`sample_fields`, ``scale`` times finer than its grid, at
    ``small_scale_level`` z for a model conditioned on it).

    ``teleport``: None (start from N(0, Q) at t_max), "auto" (the ς* that ``hdm
    gaussian-stats`` measured for the model) or a level ς*: start from the Gaussian of
    the training data at ς* (:mod:`hdm.hilbert.gaussian`). ``device``: where to sample
    ("cpu", "auto", "cuda", "cuda:K"; :func:`hdm.hilbert.devices.resolve_device`): the
    model and the generator live there. ``runaway_bound``: a sample with a |value| beyond
    it (training stds; None: non-finite values only) ends the run with
    :class:`~hdm.conditioning.ensembles.SamplingDiverged`, before anything is written.
    ``sampler`` and ``steps`` default to those of ``hdm sample`` (Heun, 50 steps)."""
    if n < 1:
        raise ValueError(f"n (--n) must be at least 1, got {n}")
    runaway_bound = checked_bound(runaway_bound)
    checkpoint = model_path(checkpoint)
    payload = load_checkpoint(checkpoint)
    if isinstance(Grid.from_dict(payload["grid"]), LatLonGrid | GlobalGrid):
        if points is not None:
            raise GridError(
                f"{checkpoint} is a gridded model: points (--points) applies to 1-D models "
                "(scale=S, --scale S, samples a gridded one on a grid S times finer)"
            )
        return sample_fields(
            checkpoint, n=n, sampler=sampler, steps=steps, seed=seed, device=device,
            batch_size=min(batch_size, 16), progress=progress, scale=scale,
            runaway_bound=runaway_bound, small_scale_level=small_scale_level,
            teleport=teleport,
        )  # fmt: skip
    if scale != 1 or small_scale_level is not None:
        raise GridError(
            "scale and small_scale_level (--scale, --small-scale-level) apply to gridded "
            f"models; {checkpoint} is a 1-D one (points, --points)"
        )
    solver_stats = load_model_statistics(checkpoint)
    if sampler in NEEDS_STATISTICS:
        required_model_statistics(solver_stats, checkpoint, sampler)
    sampler_obj = make_sampler(sampler, steps, solver_stats)
    where = resolve_device(device)
    denoiser = denoiser_from_checkpoint(payload).to(where)
    grid = sampling_grid(Grid.from_dict(payload["grid"]), points)
    start = None if teleport is None else unconditional_start(checkpoint, denoiser, grid, teleport)
    normaliser = ScalarNormaliser.from_dict(payload["normaliser"])
    generator = seeded_generator(seed, where)
    chunks, nfe = [], 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for first in tqdm(range(0, n, batch_size), desc="sample", disable=not progress):
            result = sampler_obj(
                denoiser,
                min(batch_size, n - first),
                grid,
                channels=1,
                generator=generator,
                start=start,
            )
            check_members(result.samples, runaway_bound, first=first, key="sample",
                          source=f"{sampler_obj.name} {sampler_obj.steps} steps")  # fmt: skip
            chunks.append(result.samples[:, 0].double().cpu().numpy())
            nfe = result.nfe
    wall = time.perf_counter() - t0
    values = normaliser.denormalise(np.concatenate(chunks))
    meta = payload.get("metadata", {})
    x = grid.coords()[0]
    return xr.Dataset(
        {"y": (("sample", "x"), values, {"units": meta.get("y_units", "")})},
        coords={"sample": np.arange(n), "x": ("x", x, {"units": meta.get("x_units", "")})},
        attrs={
            "title": f"hdm samples of {meta.get('dataset', 'a model')}",
            "dataset": meta.get("dataset", ""),
            "data_seed": int(meta.get("data_seed", 0)),
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(checkpoint),
            "sampler": sampler,
            "steps": steps,
            "nfe": nfe,
            "teleport_varsigma": "none" if start is None else start.varsigma,
            "device": str(where),
            "seed": seed,
            "points": grid.size,
            "sampling_wall_time_s": wall,
            "hdm_version": __version__,
            "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} hdm sample",
        },
    )


def sample_fields(
    checkpoint: str | Path,
    *,
    n: int,
    sampler: str = SAMPLE_SAMPLER,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    scale: int = 1,
    runaway_bound: float | str | None = RUNAWAY_BOUND,
    small_scale_level: float | None = None,
    teleport: float | str | None = None,
) -> xr.Dataset:
    """``n`` unconditional fields of a gridded model on its training grid (``scale`` > 1:
    a grid that many times finer, zero-shot), in physical units: ``{var}(sample, lat,
    lon)``, ``{var}(sample, level, lat, lon)`` on pressure levels (what the prior believes
    before any observation: look at them next to the training data). Drawn as
    :func:`hdm.conditioning.ensembles.draw_members` draws members (chunks of
    ``batch_size`` seeded by (seed, "sample/k")); the noise of one seed is the same
    function on every grid (:mod:`hdm.hilbert.covariance`); ``runaway_bound`` as in
    :func:`sample`. A model conditioned on its small-scale level (:mod:`hdm.hilbert.regime`)
    samples at ``small_scale_level`` z (default 0: its training fields' mean level, in
    their stds); other models refuse one. ``teleport`` as in :func:`sample`: each draw
    starts at ς* from the Gaussian of the training fields (``gaussian.pt``, on the
    training grid only) and the network denoises below it, as the members of ``hdm
    downscale`` do without observations."""
    prior = load_prior(checkpoint).to(device)
    grid = target_grid(prior, scale if scale != 1 else None)
    denoiser = prior.denoiser
    if getattr(denoiser, "regime", None) is not None:
        denoiser = denoiser.at_level(0.0 if small_scale_level is None else small_scale_level)
    elif small_scale_level is not None:
        raise ValueError(f"{checkpoint} is not conditioned on a small-scale level")
    start = None if teleport is None else unconditional_start(prior.path, denoiser, grid, teleport)
    t0 = time.perf_counter()
    x, nfe = draw_members(
        denoiser, make_sampler(sampler, steps, prior.solver_statistics), grid, n,
        seed=seed, key="sample", batch_size=batch_size, channels=len(prior.channels),
        start=start, bound=checked_bound(runaway_bound),
    )  # fmt: skip
    wall = time.perf_counter() - t0
    x = prior.normaliser.denormalise(x.double().numpy())
    lat, lon = grid.coords()
    data = {}
    for name in prior.variables:
        values, dims = x[:, prior.channel_indices(name)], ("sample", "level", "lat", "lon")
        if not prior.levels_of(name):
            values, dims = values[:, 0], ("sample", "lat", "lon")
        data[name] = (dims, values, {"units": prior.units[name]})
    coords = {"sample": np.arange(n), "lat": lat, "lon": lon}
    if prior.levels:
        coords["level"] = sorted({lev for _, lev in prior.levels})
    return xr.Dataset(
        data,
        coords=coords,
        attrs={
            "title": f"hdm unconditional samples of {prior.metadata.get('dataset', 'a model')}",
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": prior.sha256,
            "sampler": sampler,
            "steps": steps,
            "nfe": nfe,
            "device": str(device),
            "seed": seed,
            "grid": grid.describe(),
            **training_grid_attrs(prior.grid),
            "teleport_varsigma": "none" if start is None else start.varsigma,
            **(
                {"small_scale_level": denoiser.level}
                if getattr(denoiser, "regime", None) is not None
                else {}
            ),
            "sampling_wall_time_s": wall,
            "hdm_version": __version__,
            "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} hdm sample",
        },
    )


def cf_samples(ds: xr.Dataset) -> xr.Dataset:
    """The samples with the CF-1.8 attributes of every hdm store, made by
    :func:`hdm.data.stores.cf_output` as for downscale outputs: ``Conventions``, the
    schema's coordinates with their CF attributes (``lat``/``lon`` axes with cell
    bounds, ``level`` in hPa, ``sample``), the variables' ``units``/``long_name``,
    ``history`` and the provenance as ``hdm_checkpoint_hash``, ``hdm_config`` (the
    sampling attributes as JSON) and ``hdm_seed``, where the samples carry their
    ``checkpoint_sha256`` and ``seed``. The input is left untouched."""
    provenance = None
    if "checkpoint_sha256" in ds.attrs and "seed" in ds.attrs:
        skip = ("history", "hdm_version", "Conventions", "source")
        config = {
            str(k): str(v)
            for k, v in ds.attrs.items()
            if k not in skip and not str(k).startswith("hdm_")
        }
        provenance = {
            "checkpoint_hash": ds.attrs["checkpoint_sha256"],
            "config": config,
            "seed": ds.attrs["seed"],
        }
    return cf_output(ds, provenance, history=f"written by hdm {__version__} (hdm sample)")


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write atomically (temporary file in the same folder, then rename), with the CF
    attributes of :func:`cf_samples`; coordinates without a ``_FillValue`` (CF 2.5.1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    ds = cf_samples(ds)
    encoding = {str(n): {"_FillValue": None} for n, v in ds.coords.items() if v.dtype.kind == "f"}
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


#: the suffixes of ``hdm sample --out`` and the format each is written in
SAMPLE_FORMATS = {".nc": "netCDF", ".zarr": "zarr store"}


def check_output(path: str | Path, *, overwrite: bool = False) -> Path:
    """The output of ``hdm sample``, checked before any sampling: its suffix names a
    format of :data:`SAMPLE_FORMATS` (ValueError otherwise), and it does not exist
    unless ``overwrite`` (FileExistsError), each one line naming the path."""
    path = Path(path)
    if path.suffix not in SAMPLE_FORMATS:
        accepted = " or ".join(f"{k} ({v})" for k, v in SAMPLE_FORMATS.items())
        raise ValueError(f"--out {path} must end in {accepted}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def write_samples(ds: xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the samples in the format of ``path``'s suffix: ``.nc`` netCDF
    (:func:`write_netcdf`), ``.zarr`` a zarr store with consolidated metadata, written
    into a temporary folder beside it and renamed into place (an old output is removed
    only once the new one is complete), so that a failure never leaves a half-written
    output; both with the CF attributes of :func:`cf_samples`. An existing ``path`` is
    refused (FileExistsError) unless ``overwrite``; a suffix of neither kind is a
    ValueError (:func:`check_output`)."""
    path = check_output(path, overwrite=overwrite)
    if path.suffix == ".nc":
        if path.is_dir():  # an old store under a .nc name: a file cannot replace it
            shutil.rmtree(path)
        return write_netcdf(ds, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        with zarr_extensions():
            cf_samples(ds).to_zarr(tmp, mode="w", consolidated=False)
        consolidate(tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
