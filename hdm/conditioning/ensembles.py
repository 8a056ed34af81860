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

from hdm.hilbert.denoisers import Denoiser, network_count
from hdm.hilbert.devices import denoiser_device, seeded_generator
from hdm.hilbert.grids import Grid
from hdm.hilbert.sampling import Sampler, Start

__all__ = [
    "RUNAWAY_BOUND",
    "SamplingDiverged",
    "check_members",
    "checked_bound",
    "draw_members",
    "member_seed",
]

#: Members live in normalised units (each variable's training mean 0, std 1; see
#: :mod:`hdm.data.normalization`). A value this many training standard deviations from
#: the training mean is no weather (the shipped UK t2m prior: std 2.28 K, so ±114 K about
#: 280.7 K; its members on the hourly test day 2019-03-27, ×2/×4/×8, reach 3.6); a
#: sampler that gets there has run away. The guided samplers can, with a learned Jacobian
#: (:func:`hdm.conditioning.guidance._no_overshoot`); an unguarded member reached 1e4, and
#: too few steps do it too (the shipped spherical prior with MMPS and Heun 4: 112). The
#: default of :func:`draw_members`, ``hdm downscale`` (``ensemble.runaway_bound``,
#: ``--runaway-bound``) and ``hdm sample`` (``--runaway-bound``); an untrained network's
#: members reach 1e2–3e3, so the suite's plumbing tests with such networks turn it off.
RUNAWAY_BOUND = 50.0


class SamplingDiverged(FloatingPointError):
    """A member with non-finite values or values beyond :data:`RUNAWAY_BOUND`."""


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
    bound: float | None = RUNAWAY_BOUND,
) -> tuple[torch.Tensor, int]:
    """``members`` samples (N, C, *grid.shape) of ``denoiser`` (guided or not).

    Members are drawn in chunks of ``batch_size`` (memory; for a denoiser of K networks,
    :class:`~hdm.hilbert.networks.NetworkEnsemble`, rounded down to a multiple of K and at
    least K, so that member m is drawn by network m mod K whatever the chunks); chunk k is
    seeded with ``member_seed(seed, f"{key}/{k}")``; ``start``: where a teleported sampler
    starts (:mod:`hdm.conditioning.teleport`). The members are drawn on the denoiser's device
    (:func:`hdm.hilbert.devices.denoiser_device`; the generator lives there) and
    returned on the CPU, with the NFE per member. ``bound``: the largest |value| a member
    may hold (normalised units; default :data:`RUNAWAY_BOUND`; None: only non-finite
    members are refused).

    Raises:
        SamplingDiverged: a member with non-finite values or values beyond ``bound``
            (naming the key, the member and its largest |value|); nothing is returned, so
            no run writes it.
    """
    if isinstance(members, bool) or int(members) < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    networks = network_count(denoiser)
    if networks > 1:  # chunks start at multiples of K: member m is drawn by network m mod K
        batch_size = networks * max(1, int(batch_size) // networks)
    out, nfe = [], 0
    device = denoiser_device(denoiser)
    for k, first in enumerate(range(0, members, batch_size)):
        n = min(batch_size, members - first)
        gen = seeded_generator(member_seed(seed, f"{key}/{k}"), device)
        result = sampler(denoiser, n, grid, channels=channels, generator=gen, start=start)
        check_members(result.samples.detach(), bound, first=first, key=key,
                      source=_source(denoiser, sampler))  # fmt: skip
        out.append(result.samples.detach().cpu())
        nfe = result.nfe
    return torch.cat(out), nfe


def _source(denoiser: Denoiser, sampler: Sampler) -> str:
    """What drew the members, for a message: "mmps, heun 25 steps"."""
    return f"{getattr(denoiser, 'name', 'unguided')}, {sampler.name} {sampler.steps} steps"


def check_members(
    x: torch.Tensor, bound: float | None, *, first: int = 0, key: str | int = 0, source: str
) -> None:
    """Raise :class:`SamplingDiverged` for the first member of the chunk ``x`` (N, ...)
    (members ``first``, ``first`` + 1, ...) that is not finite or holds a |value| beyond
    ``bound`` (None: non-finite only). ``source`` names the sampler in the message."""
    largest = x.abs().flatten(1).amax(1)  # NaN where a member holds NaN
    bad = ~torch.isfinite(largest)
    if bound is not None:
        bad |= largest > bound
    if not bool(bad.any()):
        return
    i = int(torch.nonzero(bad)[0])
    what = (
        "non-finite values"
        if not torch.isfinite(largest[i])
        else f"|values| up to {float(largest[i]):.3g} training stds (runaway_bound {bound:g})"
    )
    raise SamplingDiverged(
        f"member {first + i} at {key} ran away: the sampler ({source}) produced {what}; "
        "use more steps or another sampler"
    )


def checked_bound(value) -> float | None:
    """A run-away bound from a config or the command line: None / "none" → None (off);
    a positive number (or its string) → float; anything else a ValueError naming it."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    try:
        bound = float(value)
    except (TypeError, ValueError):
        bound = float("nan")
    if isinstance(value, bool) or not (bound > 0 and bound != float("inf")):
        raise ValueError(
            f"runaway_bound must be none or a number of training standard deviations > 0 "
            f"(default {RUNAWAY_BOUND:g}), got {value!r}"
        )
    return bound
