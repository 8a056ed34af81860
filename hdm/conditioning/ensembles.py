"""Ensembles of posterior samples: draw N members, summarise them as xarray.

A member is one posterior sample X_0 ~ p(x | y), drawn by a sampler of
:mod:`hdm.hilbert.sampling` with a guided denoiser (:mod:`hdm.conditioning.guidance`).
Randomness is injected: every draw takes a seed, and :func:`member_seed` derives the
seed of one time step from the run's seed and the time itself, so a time step gets the
same members whether it is drawn alone, in a batch, or in a rerun of a chunk.

Summaries over the ``member`` dimension: mean, standard deviation (ddof = 1, the
unbiased ensemble variance) and empirical quantiles (linear interpolation between
order statistics), plus the exceedance probability P(X > threshold) when asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from hdm.conditioning.guidance import make_guidance
from hdm.conditioning.observations import ObservationOperator
from hdm.data.schema import MEMBER
from hdm.hilbert.denoisers import Denoiser
from hdm.hilbert.grids import Grid
from hdm.hilbert.sampling import make_sampler

__all__ = ["EnsembleConfig", "draw_members", "member_seed", "summarise"]


@dataclass(frozen=True)
class EnsembleConfig:
    """How members are drawn.

    members: ensemble size N ≥ 1. sampler/steps: see :func:`make_sampler` (Euler–Maruyama
    with 50 steps = 50 NFE). guidance: "mmps", "sda", "dps" or "replacement"; guidance_options:
    its keyword arguments (e.g. ``{"gamma": 1.0}``, ``{"cg_steps": 5}``). batch_size:
    members per sampler call (memory). seed: the run's seed.
    """

    members: int = 16
    sampler: str = "em"
    steps: int = 50
    guidance: str = "mmps"
    guidance_options: dict = field(default_factory=dict)
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or int(self.members) < 1:
            raise ValueError(f"members must be at least 1, got {self.members}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        make_sampler(self.sampler, self.steps)  # validates the name and steps


def member_seed(seed: int, key: str | int) -> int:
    """A 63-bit seed from the run seed and a key (e.g. an ISO time): stable everywhere."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def draw_members(
    denoiser: Denoiser,
    grid: Grid,
    operator: ObservationOperator,
    y: np.ndarray | torch.Tensor,
    cfg: EnsembleConfig,
    *,
    key: str | int = 0,
    channels: int = 1,
) -> tuple[torch.Tensor, int]:
    """N posterior members (N, C, *grid.shape) given observations y (n_obs,) of one time.

    The members of chunk k (``cfg.batch_size`` members each) are drawn with the seed
    ``member_seed(cfg.seed, f"{key}/{k}")``. Returns the members and the NFE per member.
    """
    sampler = make_sampler(cfg.sampler, cfg.steps)
    guided = make_guidance(cfg.guidance, denoiser, operator, y, **cfg.guidance_options)
    out, nfe = [], 0
    for k, start in enumerate(range(0, cfg.members, cfg.batch_size)):
        n = min(cfg.batch_size, cfg.members - start)
        gen = torch.Generator().manual_seed(member_seed(cfg.seed, f"{key}/{k}"))
        result = sampler(guided, n, grid, channels=channels, generator=gen)
        if not torch.isfinite(result.samples).all():
            raise FloatingPointError(
                f"the guided sampler ({cfg.guidance}, {cfg.sampler} {cfg.steps} steps) produced "
                f"non-finite values at {key}; lower the guidance scale or use more steps"
            )
        out.append(result.samples.detach())
        nfe = result.nfe
    return torch.cat(out), nfe


def summarise(
    ensemble: xr.DataArray,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    thresholds: Sequence[float] = (),
) -> xr.Dataset:
    """Mean, std (ddof=1), quantiles and exceedance probabilities over ``member``.

    Returns a Dataset with ``{name}_mean``, ``{name}_std``, ``{name}_quantile``
    (dim ``quantile``) and, for thresholds, ``{name}_exceedance`` (dim ``threshold``).
    """
    if MEMBER not in ensemble.dims:
        raise ValueError(f"the ensemble has no {MEMBER!r} dimension; dims: {ensemble.dims}")
    name = str(ensemble.name or "field")
    units = ensemble.attrs.get("units", "")
    m = ensemble.sizes[MEMBER]
    out = xr.Dataset()
    out[f"{name}_mean"] = ensemble.mean(MEMBER).assign_attrs(
        units=units, long_name=f"ensemble mean of {name}"
    )
    std = ensemble.std(MEMBER, ddof=1) if m > 1 else xr.full_like(ensemble.isel({MEMBER: 0}), 0.0)
    out[f"{name}_std"] = std.assign_attrs(
        units=units, long_name=f"ensemble standard deviation of {name} (ddof=1)"
    )
    if quantiles:
        q = ensemble.quantile(list(quantiles), dim=MEMBER)
        out[f"{name}_quantile"] = q.assign_attrs(
            units=units, long_name=f"empirical quantiles of {name} over members"
        )
    if thresholds:
        th = xr.DataArray(list(thresholds), dims="threshold", attrs={"units": units})
        out[f"{name}_exceedance"] = (
            (ensemble > th)
            .mean(MEMBER)
            .assign_attrs(
                units="1", long_name=f"fraction of members with {name} above the threshold"
            )
        )
        out = out.assign_coords(threshold=th)
    return out
