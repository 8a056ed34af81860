"""``hdm gaussian-stats MODEL``: the Gaussian of a model's training data, and its ς*.

Teleportation (:mod:`hdm.hilbert.gaussian`) replaces the sampler's steps above a noise
level ς* = σ/α by one exact draw from the Gaussian N(m, C) of the training data. Where
that is safe depends on the model, so ς* is measured, once per model, here:

1. The fields the curve is measured on must be new to both denoisers. With ``heldout``
   (``--heldout START..END``: a period of the model's dataset outside its training
   period, e.g. a validation split; gridded models only, functional curves have no
   times) they are that period's fields, in the model's normalisation, and the PCA
   basis is fitted on every training field. Without it, the
   model's training fields (read again through the config beside ``model.pt``) are split
   in time: the last ``holdout`` fraction is held out from the PCA, the rest gives the
   basis (:meth:`GaussianStatistics.fit`); the mean is that of every training field, as
   the network saw them (a mean of the first fields only would add the period's drift
   to the difference at every level). The network was trained on that tail, so there
   the comparison favours it and ς* comes out too high (the network is trusted to
   higher noise than it earns): on the UK t2m prior the tail gives ς* = 1.48, while on
   days neither saw (a prior trained on 03-01..20, fields of 03-22..24) the Gaussian
   denoises better than the network down to ς ≈ 0.5 (BENCHMARKS.md,
   uk-validation-teleport-levels). The curve records which fields it used.
2. On the held-out fields x_0, at noise levels ς_1 < … < ς_K spaced uniformly in log ς
   over the process's range, x_t = α x_0 + σ ξ (ξ ~ N(0, Q), seeded) is denoised by the
   network (D_θ) and by the exact Gaussian denoiser (D_G, dense: one channel and at most
   4,096 points). Their held-out errors, relative to the fields' anomalies,

       e_θ(ς) = ‖D_θ(x_t) − x_0‖ / ‖x_0 − m‖,     e_G(ς) = ‖D_G(x_t) − x_0‖ / ‖x_0 − m‖

   (root mean squares over fields), and their difference δ(ς) = ‖D_θ − D_G‖ / ‖x_0 − m‖
   make the curve.
3. ς* is the lowest level from which e_G ≤ (1 + τ) e_θ at every level above: down to
   ς*, replacing the network by the Gaussian loses at most a fraction τ of denoising
   accuracy on fields neither saw fitted. (δ itself is not the criterion: on the UK t2m
   prior it is 0.17–0.48 at every level above ς = 0.1, mostly because the network is the
   worse denoiser there, e_θ = 0.86 against e_G = 0.71 at ς = 6.4.)
4. The statistics kept are fitted on all the training fields, with the curve and ς*
   recorded, and written to ``gaussian.pt`` beside the model (with its sha256), with a
   plot of the curve.

For a model with several channels, or a grid too large for the dense denoiser, no curve
is measured: give ``--varsigma-star`` (and say where it came from).

Shrinkage (``--shrink δ``, ``--shrink-lowpass σ``): the sample covariance C of N
autocorrelated days has no variance outside the span of those days, and the members start
from its posterior, so on days unlike the training days the spread at the coarse cells'
scales falls short (BENCHMARKS.md, uk-validation-shift). The statistics kept are then

    C' = (1 − δ) C + δ s L Q Lᵀ,      s = tr C / tr Q,

(:meth:`GaussianStatistics.shrunk`): Q the model's own noise covariance (full rank, the
data's radial spectrum, :mod:`hdm.hilbert.covariance`) scaled to the data's total
variance, and L the Gaussian low-pass of σ grid spacings of the augmentation
(:func:`hdm.hilbert.augmentation.gaussian_lowpass`), so the added directions are smooth: Q
itself would add small scales over a sea where the data have none (speckle 1.5–1.6 on the
validation splits). ς* is measured with C' (the Gaussian the sampler starts from).

It is off by default (``shrink=0``). On the UK t2m validation splits δ = 0.3 with σ = 2
(0.5°) was the best variant (BENCHMARKS.md, uk-gaussian-shrinkage: against the sample
covariance, the rougher days' spread–skill 0.82 / 0.80 → 0.92 / 0.88 at ×4 / ×8, CRPS
−10 % / −3 %; the calm days' CRPS −1 %), but with the shipped prior (trained on 576
fields, more than either validation prior's 312 and 480) it lost on the test week at ×4
and ×8: RMSE +3…+4 %, CRPS +1…+3 %, spread–skill no higher, and 8–10 % less high-wavenumber
power (section uk-evaluation-shrink-week). A full-rank start lowers the members'
small-scale power (convex or additive, section uk-gaussian-shrinkage), which helped the
validation priors (too much of it) and hurt the shipped one (too little), and what a
sample covariance lacks shrinks as N grows. The
option applies to one-channel 2-D grids without periodic axes of at most 4,096 points (the
low-pass reflects at the edges; a global grid's longitude wraps); elsewhere it is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hdm.data.accessor import grid_of, to_tensor
from hdm.data.normalization import normaliser_from_dict
from hdm.data.schema import TIME
from hdm.domains.atmosphere import open_split, open_unseen_period, training_spec
from hdm.domains.statics import statics_from_record
from hdm.hilbert.augmentation import gaussian_lowpass
from hdm.hilbert.checkpoints import (
    denoiser_from_checkpoint,
    file_sha256,
    load_checkpoint,
    save_gaussian,
)
from hdm.hilbert.gaussian import (
    DENSE_DENOISER_LIMIT,
    GaussianStatistics,
    TeleportError,
    check_varsigma,
    varsigma_range,
)
from hdm.hilbert.grids import GlobalGrid, Grid, LatLonGrid
from hdm.pipelines.config import load_train_config
from hdm.pipelines.train import training_data
from hdm.plotting import plot_gaussian_curve

log = logging.getLogger("hdm")

__all__ = [
    "DEFAULT_SHRINK_LOWPASS",
    "GaussianStatsConfig",
    "denoiser_difference",
    "gaussian_statistics",
    "heldout_fields",
    "model_and_training_fields",
    "parse_period",
    "require_gridded",
    "shrink_toward_lowpassed_q",
    "tail_split",
]

#: σ of the shrinkage target's low-pass, in grid spacings, when none is given: the best
#: on the UK t2m validation splits (BENCHMARKS.md, uk-gaussian-shrinkage)
DEFAULT_SHRINK_LOWPASS = 2.0


@dataclass(frozen=True)
class GaussianStatsConfig:
    """How the statistics and ς* are made (module doc).

    Attributes:
        rank: PCA modes kept (None: all, at most N − 1).
        holdout: the fraction of the training fields (the last in time) that the curve
            is measured on when no ``heldout`` period is given.
        heldout: (START, END), a period of the model's dataset outside its training
            period that the curve is measured on (module doc, step 1).
        threshold: τ, the largest relative loss of denoising accuracy accepted above ς*.
        levels: K, the noise levels of the curve.
        max_fields: at most this many held-out fields enter the curve.
        varsigma_star: a given ς* instead of the measured one.
        seed: the noise draws of the curve.
        shrink: δ, the weight of the full-rank target (module doc); 0: the sample
            covariance as it is (the default).
        shrink_lowpass: σ, the target's low-pass in grid spacings.
    """

    rank: int | None = None
    holdout: float = 0.2
    heldout: tuple[str, str] | None = None
    threshold: float = 0.05
    levels: int = 25
    max_fields: int = 64
    varsigma_star: float | None = None
    seed: int = 0
    shrink: float = 0.0
    shrink_lowpass: float = DEFAULT_SHRINK_LOWPASS

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must lie in (0, 1), got {self.holdout}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be at least 1, got {self.rank}")
        if not 0 <= self.shrink < 1:
            raise ValueError(f"the shrinkage weight must lie in [0, 1), got {self.shrink}")
        if not self.shrink_lowpass > 0:
            raise ValueError(f"the shrinkage low-pass must be positive, got {self.shrink_lowpass}")
        if self.heldout is not None:
            start, end = (np.datetime64(v) for v in self.heldout)
            if not start <= end:
                raise ValueError(f"the held-out period {self.heldout} ends before it starts")


def parse_period(text: str) -> tuple[str, str]:
    """'START..END' (ISO times) → (START, END); a ValueError naming the text otherwise."""
    parts = text.split("..")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"a period is START..END (e.g. 2019-03-22..2019-03-24T23), got {text!r}")
    for part in parts:
        try:
            np.datetime64(part)
        except ValueError as exc:
            raise ValueError(f"{part!r} in the period {text!r} is not an ISO time") from exc
    return parts[0], parts[1]


def require_gridded(path: Path, grid: Grid) -> None:
    """A :class:`TeleportError` where the model at ``path`` (on ``grid``) is not a model
    of a gridded dataset (a functional model's curves, on an interval): only a gridded
    dataset has times, so only there is a held-out period (``--heldout``) a thing."""
    if not isinstance(grid, LatLonGrid | GlobalGrid):
        raise TeleportError(
            f"--heldout takes a period of a gridded model's data; {path} is a model of "
            f"{grid.describe()} (a functional dataset, whose curves have no times): leave "
            "--heldout out"
        )


def heldout_fields(path: Path, period: tuple[str, str], grid: Grid) -> torch.Tensor:
    """The fields of ``period`` of the dataset the model at ``path`` was trained on, in its
    normalisation, (N, C, *grid.shape) float32: a :class:`TeleportError` where the period
    overlaps the training period (the network saw those fields), selects no field, holds
    NaN (:func:`hdm.domains.atmosphere.open_unseen_period`) or lies on another grid; a
    period outside the data is named with the data's files and time range."""
    require_gridded(path, grid)
    payload = load_checkpoint(path)
    metadata = payload.get("metadata", {})
    spec = training_spec(metadata)
    names = list(metadata.get("variables", ())) or list(spec.variables)
    try:
        # the period is looked for in the data, not the checkpoint: a period outside the
        # data names the file and its times (opening is lazy: metadata only)
        data = spec.resolved_path()
        files = ", ".join(map(str, data)) if isinstance(data, list) else str(data)
        full = open_split(spec, "all")
        if full.sel({TIME: slice(*period)}).sizes[TIME] == 0:
            times = full[TIME].values
            raise ValueError(
                f"the period {period[0]}..{period[1]} selects no time step of the model's "
                f"data {files} (its times run {str(times[0])[:16]}..{str(times[-1])[:16]})"
            )
        trained_days = metadata.get("train_days")
        ds = open_unseen_period(spec, period, str(path), trained_days)[names]
    except ValueError as exc:
        raise TeleportError(f"held-out fields: {exc}") from exc
    if grid_of(ds) != grid:
        raise TeleportError(
            f"the held-out fields are on {grid_of(ds).describe()}, the model on {grid.describe()}"
        )
    normaliser = normaliser_from_dict(payload["normaliser"])
    return to_tensor(normaliser.normalise(ds), names, dtype=torch.float32)


def tail_split(
    fields: torch.Tensor, grid: Grid, holdout: float, rank: int | None = None
) -> tuple[GaussianStatistics, torch.Tensor]:
    """(the Gaussian of the first 1 − ``holdout`` of ``fields`` (N, C, *grid.shape), with
    the mean of all of them; the held-out last ``holdout``): module doc, step 1."""
    n = fields.shape[0]
    cut = round(n * (1 - holdout))
    if cut < 2 or cut >= n:
        raise TeleportError(f"{n} training fields cannot be split {1 - holdout:.0%} / rest")
    fit = GaussianStatistics.fit(fields[:cut], grid, rank)
    # the mean of every training field, which the network learned too: a mean fitted on
    # the first fields only differs from it by the period's drift (in March 2019, 0.2 of
    # the held-out anomalies' norm), which would read as a denoiser difference at every
    # noise level
    fit.mean = fields.to(torch.float64).mean(0)
    return fit, fields[cut:]


def denoiser_difference(
    denoiser,
    stats: GaussianStatistics,
    fields: torch.Tensor,
    varsigmas: np.ndarray,
    seed: int = 0,
) -> dict:
    """δ(ς) of the module doc, and the network's own relative error ‖D_θ − x_0‖/‖x_0 − m‖,
    at each level of ``varsigmas`` for held-out ``fields`` (M, 1, *grid.shape)."""
    process = denoiser.process
    gaussian = stats.denoiser(process)
    grid = stats.grid
    x0 = fields.to(torch.float32)
    scale = float(((x0.double() - stats.mean) ** 2).sum().sqrt())
    generator = torch.Generator().manual_seed(seed)
    difference, network_error, gaussian_error = [], [], []
    for v in varsigmas:
        t = process.schedule.t_from_varsigma(torch.tensor(float(v), dtype=torch.float64))
        times = torch.full((x0.shape[0],), float(t), dtype=torch.float64)
        xi = process.noise(x0.shape[0], x0.shape[1], grid, generator)
        xt = process.perturb(x0, times, xi).to(torch.float32)
        with torch.no_grad():
            d_net = denoiser(xt, times, grid).double()
        d_gauss = gaussian(xt.double(), times, grid)
        difference.append(float((d_net - d_gauss).pow(2).sum().sqrt()) / scale)
        network_error.append(float((d_net - x0.double()).pow(2).sum().sqrt()) / scale)
        gaussian_error.append(float((d_gauss - x0.double()).pow(2).sum().sqrt()) / scale)
    return {
        "varsigma": [float(v) for v in varsigmas],
        "difference": difference,
        "network_error": network_error,
        "gaussian_error": gaussian_error,
    }


def shrink_toward_lowpassed_q(
    stats: GaussianStatistics, process, weight: float, sigma_cells: float
) -> GaussianStatistics:
    """``stats`` shrunk to (1 − δ) C + δ s L Q Lᵀ, s = tr C / tr Q (module doc), for a
    one-channel 2-D grid of at most 4,096 points; a :class:`TeleportError` otherwise."""
    grid = stats.grid
    # a global grid's longitude wraps, which the reflecting low-pass does not
    if grid.ndim != 2 or any(axis.periodic for axis in grid.axes):
        raise TeleportError(
            "the low-passed target is made on 2-D grids without periodic axes (the "
            f"low-pass reflects at the edges); {grid.describe()} is not one: give --shrink 0"
        )
    # before the dense D × D matrices below are built
    d = stats.require_dense("shrinking the Gaussian", ": give --shrink 0")
    q = process.covariance.dense(grid)
    unit = torch.eye(d, dtype=torch.float64).reshape(d, 1, *grid.shape)
    # row j of the filtered identity is L e_j, so the matrix of L is its transpose
    low = gaussian_lowpass(unit, sigma_cells).reshape(d, d).numpy().T
    scale = float(np.trace(stats.covariance()) / np.trace(q))
    target = scale * (low @ q @ low.T)
    record = {"target": "s L Q L^T", "lowpass_cells": float(sigma_cells), "scale": scale}
    return stats.shrunk(target, weight, record)


def lowest_safe_level(curve: dict, threshold: float) -> float | None:
    """The lowest ς from which e_G ≤ (1 + τ) e_θ at every level above (None: not even at
    the top)."""
    rows = zip(curve["varsigma"], curve["gaussian_error"], curve["network_error"], strict=True)
    star = None
    for v, e_gauss, e_net in sorted(rows, reverse=True):
        if e_gauss > (1 + threshold) * e_net:
            break
        star = v
    return star


def _levels(process, k: int) -> np.ndarray:
    low, high = varsigma_range(process)
    # strictly inside the range: ς* must be where a sampler can start
    return np.geomspace(max(low, 1e-3) * 1.01, high * 0.99, k)


def model_and_training_fields(model: str | Path) -> tuple[Path, object, Grid, torch.Tensor]:
    """(model.pt path, denoiser, grid, training fields (N, C, *grid.shape) in the model's
    normalisation) of ``model`` (a model.pt or its folder), the fields read again through
    the config.yaml beside it."""
    path = Path(model)
    path = path / "model.pt" if path.is_dir() else path
    payload = load_checkpoint(path)
    train_config = path.with_name("config.yaml")
    if not train_config.exists():
        raise FileNotFoundError(
            f"{train_config} is missing: the statistics are computed on the training data "
            "that the config beside the model names"
        )
    data = training_data(load_train_config(train_config), resample=False)
    grid = Grid.from_dict(payload["grid"])
    fields = data.tensor
    if tuple(fields.shape[2:]) != grid.shape:
        raise TeleportError(
            f"the training data named by {train_config} are on a grid of shape "
            f"{tuple(fields.shape[2:])}, the model on {grid.describe()}"
        )
    statics = statics_from_record(payload["statics"], str(path)) if "statics" in payload else None
    return path, denoiser_from_checkpoint(payload, statics=statics), grid, fields


def gaussian_statistics(
    model: str | Path, config: GaussianStatsConfig | None = None, plot: bool = True
) -> tuple[GaussianStatistics, Path]:
    """Fit, measure and write the statistics of ``model`` (a model.pt or its folder);
    returns them and the path of ``gaussian.pt`` (module doc)."""
    cfg = config or GaussianStatsConfig()
    if cfg.heldout is not None:  # before the training data are read
        where = Path(model) / "model.pt" if Path(model).is_dir() else Path(model)
        require_gridded(where, Grid.from_dict(load_checkpoint(where)["grid"]))
    path, denoiser, grid, fields = model_and_training_fields(model)
    n = fields.shape[0]
    curve = None
    star = cfg.varsigma_star
    single = fields.shape[1] == 1 and grid.size <= DENSE_DENOISER_LIMIT

    def shrink(stats: GaussianStatistics) -> GaussianStatistics:
        if cfg.shrink == 0:
            return stats
        return shrink_toward_lowpassed_q(stats, denoiser.process, cfg.shrink, cfg.shrink_lowpass)

    if single:
        if cfg.heldout is not None:
            fit = GaussianStatistics.fit(fields, grid, cfg.rank)
            held = heldout_fields(path, cfg.heldout, grid)
            source, n_fit = f"{cfg.heldout[0]}..{cfg.heldout[1]}", n
        else:
            fit, held = tail_split(fields, grid, cfg.holdout, cfg.rank)
            source, n_fit = f"the last {cfg.holdout:.0%} of the training fields", n - len(held)
            if isinstance(grid, LatLonGrid | GlobalGrid):
                advice = "give --heldout START..END, a period it never saw"
            else:  # a functional model's curves have no times to hold a period out of
                advice = (
                    "--heldout is for gridded models: read this ς* as an upper bound, or "
                    "give --varsigma-star"
                )
            log.warning(
                "measuring ς* on %s, which the network was trained on: it favours the "
                "network (ς* too high); %s",
                source,
                advice,
            )
        fit = shrink(fit)
        held = held[: cfg.max_fields]
        curve = denoiser_difference(
            denoiser, fit, held, _levels(denoiser.process, cfg.levels), cfg.seed
        )
        curve.update(
            threshold=cfg.threshold, n_fields=int(held.shape[0]), n_fit=n_fit, fields=source
        )
        measured = lowest_safe_level(curve, cfg.threshold)
        curve["varsigma_star"] = measured
        star = measured if star is None else star
    elif star is None:
        raise TeleportError(
            f"{path}: ς* can be measured for one-channel models of at most 4,096 points; "
            f"this one has {fields.shape[1]} channel(s) × {grid.size} points: give "
            "--varsigma-star"
        )
    if star is not None:
        check_varsigma(denoiser.process, star)
    # with --heldout the curve's Gaussian is already the one of every training field
    reuse = single and cfg.heldout is not None
    stats = fit if reuse else shrink(GaussianStatistics.fit(fields, grid, cfg.rank))
    stats.varsigma_star, stats.curve = star, curve
    stats.model_sha256 = file_sha256(path)
    out = save_gaussian(path, stats)
    if plot and curve is not None:
        plot_gaussian_curve(path.with_name("gaussian_curve.png"), curve, star, path.parent.name)
    log.info(
        "wrote %s: %d modes (%.1f%% of the variance), shrinkage %s, ς* = %s",
        out,
        stats.rank,
        100 * stats.explained,
        stats.shrinkage,
        star,
    )
    return stats, out
