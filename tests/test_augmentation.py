"""The geography-keeping augmentation: x' = L x + a (x − L x) with a Gaussian low-pass L."""

from __future__ import annotations

import math

import pytest
import torch

from hdm.hilbert.augmentation import draw_amplitudes, gaussian_lowpass, scale_small_scales
from hdm.hilbert.covariance import SpectralCovariance
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.grids import Axis, GlobalGrid, IntervalGrid, LatLonGrid
from hdm.hilbert.networks import TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP
from hdm.hilbert.training import OptimConfig, _TrainingRun


def test_the_lowpass_keeps_constants_and_linear_ramps_away_from_the_edges():
    """A normalised symmetric kernel reproduces affine functions exactly (reflection
    breaks it only within the filter's reach of the edges)."""
    yy, xx = torch.meshgrid(torch.arange(20.0), torch.arange(30.0), indexing="ij")
    ramp = (3 + 0.5 * yy - 0.2 * xx)[None, None]
    low = gaussian_lowpass(ramp, 1.5)
    assert low.shape == ramp.shape and torch.isfinite(low).all()
    assert torch.allclose(low[..., 5:-5, 5:-5], ramp[..., 5:-5, 5:-5], atol=1e-5)
    assert torch.allclose(gaussian_lowpass(torch.full((2, 1, 12, 12), 4.0), 1.0), torch.tensor(4.0))


def test_the_grid_scale_checkerboard_is_scaled_by_a_and_smooth_fields_are_kept():
    """(−1)^(i+j) has almost no power left after L (its Gaussian transfer at the Nyquist
    frequency is exp(−π²σ²/2) ≈ 0 for σ = 2), so x' ≈ a x; a sine of wavelength λ = 30
    cells keeps the fraction T = exp(−2π²σ²/λ²) ≈ 0.916 in L x, so x' − x = (a − 1)(1 − T) x."""
    i, j = torch.meshgrid(torch.arange(33), torch.arange(49), indexing="ij")
    checker = ((-1.0) ** (i + j))[None, None].repeat(2, 1, 1, 1)
    a = torch.tensor([0.8, 1.25])
    out = scale_small_scales(checker, a, 2.0)
    inner = (..., slice(8, -8), slice(8, -8))
    assert torch.allclose(out[inner], a.view(2, 1, 1, 1) * checker[inner], atol=1e-4)
    smooth = torch.sin(2 * math.pi * i / 30.0)[None, None].repeat(2, 1, 1, 1).float()
    kept = scale_small_scales(smooth, a, 2.0)
    transfer = math.exp(-2 * math.pi**2 * 2.0**2 / 30.0**2)
    expected = (a.view(2, 1, 1, 1) - 1) * (1 - transfer) * smooth
    assert torch.allclose((kept - smooth)[inner], expected[inner], atol=1e-3)


def test_amplitude_one_returns_the_field_and_draws_stay_in_range():
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(scale_small_scales(x, torch.ones(3), 2.0), x, atol=1e-6)
    a = draw_amplitudes(4000, 1.3, torch.Generator().manual_seed(1))
    assert float(a.min()) >= 1 / 1.3 - 1e-6 and float(a.max()) <= 1.3 + 1e-6
    assert abs(float(a.log().mean())) < 0.02  # symmetric in log a
    with pytest.raises(ValueError, match=">= 1"):
        draw_amplitudes(3, 0.9, torch.Generator())


def test_the_optim_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="small_scale_amplitude"):
        OptimConfig(small_scale_amplitude=0.5)
    with pytest.raises(ValueError, match="small_scale_sigma"):
        OptimConfig(small_scale_sigma=0.0)


def _model(dim: int) -> PreconditionedDenoiser:
    torch.manual_seed(0)
    backbone = TimeConditionedFNO(dim=dim, width=4, n_modes=4, n_layers=1, time_dim=8)
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.3, nu=1.5))
    return PreconditionedDenoiser(backbone, process, "v")


def test_training_batches_keep_their_low_pass_and_only_regional_grids_take_it(tmp_path):
    """The augmented batch differs from the plain one only in its small scales: x' − x =
    (a − 1)(x − L x), so L x' − L x = (a − 1)(L x − L² x) is small against x' − x."""
    grid = LatLonGrid.regular((50, 58), (-10, 2), (20, 24))
    data = torch.randn(8, 1, 20, 24, generator=torch.Generator().manual_seed(2))
    plain = OptimConfig(steps=1, batch_size=4, seed=5)
    augmented = OptimConfig(steps=1, batch_size=4, seed=5, small_scale_amplitude=1.5)
    x_plain = _TrainingRun(_model(2), data, grid, plain, tmp_path / "a.pt", None).next_batch()[0]
    x_aug = _TrainingRun(_model(2), data, grid, augmented, tmp_path / "b.pt", None).next_batch()[0]
    change = x_aug - x_plain
    assert float(change.abs().max()) > 0.05
    low_change = gaussian_lowpass(x_aug, 2.0) - gaussian_lowpass(x_plain, 2.0)
    assert float(low_change.pow(2).mean()) < 0.2 * float(change.pow(2).mean())
    sphere = GlobalGrid((Axis(-90, 90, 9, False, "lat"), Axis(-180, 180, 16, True, "lon")))
    with pytest.raises(ValueError, match="regional lat/lon"):
        _TrainingRun(
            _model(2), torch.zeros(4, 1, 9, 16), sphere, augmented, tmp_path / "c.pt", None
        )
    with pytest.raises(ValueError, match="regional lat/lon"):
        _TrainingRun(
            _model(1),
            torch.zeros(4, 1, 16),
            IntervalGrid(-1, 1, 16),
            augmented,
            tmp_path / "d.pt",
            None,
        )
