"""Ensembles of posterior samples: N members drawn with seeds that depend on (seed, key).

A member is one posterior sample X_0 ~ p(x | y), drawn by a sampler of
:mod:`hdm.hilbert.sampling` with a guided denoiser (:mod:`hdm.conditioning.guidance`).
Randomness is injected: :func:`member_seed` derives the seed of each chunk of members
from the run's seed and a key (e.g. the ISO time of the field), so a time step gets the
same members whether it is drawn alone, in a batch of times, or in a rerun of a chunk.
The summaries over members (mean, std, quantiles) are xarray work:
:func:`hdm.downscaling.output.summarise`.
"""

from __future__ import annotations

import hashlib

import torch

from hdm.hilbert.denoisers import Denoiser
from hdm.hilbert.devices import denoiser_device, seeded_generator
from hdm.hilbert.grids import Grid
from hdm.hilbert.sampling import Sampler, Start

__all__ = ["draw_members", "member_seed"]


def member_seed(seed: int, key: str | int) -> int:
    """A 63-bit seed from the run seed and a key (e.g. an ISO time): stable everywhere."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def draw_members(
    denoiser: Denoiser,
    sampler: Sampler,
    grid: Grid,
    members: int,
    *,
    seed: int,
    key: str | int = 0,
    batch_size: int = 16,
    channels: int = 1,
    start: Start | None = None,
) -> tuple[torch.Tensor, int]:
    """``members`` samples (N, C, *grid.shape) of ``denoiser`` (guided or not).

    Members are drawn in chunks of ``batch_size`` (memory); chunk k is seeded with
    ``member_seed(seed, f"{key}/{k}")``; ``start``: where a teleported sampler starts
    (:mod:`hdm.conditioning.teleport`). The members are drawn on the denoiser's device
    (:func:`hdm.hilbert.devices.denoiser_device`; the generator lives there) and
    returned on the CPU, with the NFE per member.

    Raises:
        FloatingPointError: a chunk with non-finite values (naming the key).
    """
    if isinstance(members, bool) or int(members) < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out, nfe = [], 0
    device = denoiser_device(denoiser)
    for k, first in enumerate(range(0, members, batch_size)):
        n = min(batch_size, members - first)
        gen = seeded_generator(member_seed(seed, f"{key}/{k}"), device)
        result = sampler(denoiser, n, grid, channels=channels, generator=gen, start=start)
        if not torch.isfinite(result.samples).all():
            name = getattr(denoiser, "name", "unguided")
            raise FloatingPointError(
                f"the sampler ({name}, {sampler.name} {sampler.steps} steps) produced "
                f"non-finite values at {key}; lower the guidance scale or use more steps"
            )
        out.append(result.samples.detach().cpu())
        nfe = result.nfe
    return torch.cat(out), nfe
