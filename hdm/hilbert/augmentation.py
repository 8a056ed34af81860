"""Training augmentation that keeps geography: random amplitude of the small scales.

A prior trained on a few weeks learns the small-scale variability of those weeks only;
on rougher days (clear nights with strong land–sea and orographic contrasts) its
posterior members vary too little below the coarse cells. Flips, shifts and rotations
would move the coasts and mountains the static inputs describe, so they are not used.
This augmentation keeps every field where it is and varies how strong its small scales
are:

    x' = L x + a (x − L x),     log a ~ U(−log r, log r),

per training sample, with L a Gaussian low-pass of standard deviation ``sigma_cells``
grid spacings along both axes (separable, reflecting at the domain edges, so no
wrap-around across a regional domain). The large scales L x are unchanged; the
small-scale part (coastal contrasts, orographic detail, fronts' sharpness) is scaled
by a ∈ [1/r, r]. Symmetric in log a, so the mean log-amplitude is the data's.

Shapes: x (B, C, H, W) on a 2-D grid, a (B,).

The filter is two torch convolutions rather than ``scipy.ndimage.gaussian_filter``: it runs
on every training batch where the batch lives (a GPU under ``torchrun`` included), and a
round trip through NumPy on the host would cost more than the filter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["draw_amplitudes", "gaussian_lowpass", "scale_small_scales"]


def gaussian_lowpass(x: torch.Tensor, sigma_cells: float) -> torch.Tensor:
    """L x: separable Gaussian filter (σ = ``sigma_cells`` grid spacings, truncated at
    3σ) over the last two axes of x (B, C, H, W), reflecting at the edges.

    Raises:
        ValueError: σ not positive, or a grid smaller than the filter's reach + 1.
    """
    if not sigma_cells > 0:
        raise ValueError(f"the low-pass width must be positive, got {sigma_cells}")
    radius = max(1, math.ceil(3 * sigma_cells))
    h, w = x.shape[-2:]
    if min(h, w) <= radius:
        raise ValueError(
            f"a {h} x {w} grid is too small for a low-pass of {sigma_cells} grid spacings"
        )
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_cells) ** 2)
    kernel = kernel / kernel.sum()
    b, c = x.shape[:2]
    flat = x.reshape(b * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return flat.reshape(x.shape)


def draw_amplitudes(
    n: int, max_factor: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """a (n,) with log a uniform on [−log r, log r], r = ``max_factor`` ≥ 1."""
    if not max_factor >= 1:
        raise ValueError(f"the amplitude range must be >= 1, got {max_factor}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.exp((2 * u - 1) * math.log(max_factor)).to(dtype)


def scale_small_scales(
    x: torch.Tensor, amplitudes: torch.Tensor, sigma_cells: float
) -> torch.Tensor:
    """x' = L x + a (x − L x) per sample (module doc); x (B, C, H, W), amplitudes (B,)."""
    low = gaussian_lowpass(x, sigma_cells)
    return low + amplitudes.to(x).view(-1, *([1] * (x.ndim - 1))) * (x - low)
