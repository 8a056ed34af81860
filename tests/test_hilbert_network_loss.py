"""Tests of hdm.hilbert.networks, the preconditioning algebra of
hdm.hilbert.denoisers.PreconditionedDenoiser and hdm.hilbert.losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hdm.hilbert.covariance import SpectralCovariance
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.grids import IntervalGrid, LatLonGrid, PeriodicGrid, RectGrid
from hdm.hilbert.losses import denoising_loss, weighted_mean_square
from hdm.hilbert.networks import GridError, TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP, LinearVP

PROCESS = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.1, 1.5))


def small_fno(dim: int = 1, channels: int = 1, seed: int = 0) -> TimeConditionedFNO:
    torch.manual_seed(seed)
    return TimeConditionedFNO(
        dim=dim, channels=channels, width=8, n_modes=8, n_layers=2, time_dim=16
    )


# ------------------------------------------------------------------------- network


def test_fno_accepts_any_resolution_of_its_interval():
    model = small_fno()
    coarse = IntervalGrid(0.0, 1.0, 40)
    fine = IntervalGrid(0.0, 1.0, 157)  # (40 − 1)·4 + 1: shares every coarse point
    outs = []
    with torch.no_grad():
        for grid in (coarse, fine):
            u = torch.sin(2 * math.pi * torch.as_tensor(grid.coords()[0], dtype=torch.float32))
            x = u.reshape(1, 1, -1).repeat(2, 1, 1)
            out = model(x, torch.tensor([0.3, -0.5]), grid)
            assert out.shape == x.shape and torch.isfinite(out).all()
            outs.append(out)
    # the same function in gives (nearly) the same function out at the shared points
    scale = outs[1].abs().max()
    assert scale > 1e-3
    assert (outs[0] - outs[1][..., ::4]).abs().max() <= 0.1 * scale


def test_fno_time_conditioning_is_per_sample():
    grid = IntervalGrid(0.0, 2.0, 24)
    model = small_fno()
    for layer in model.film:  # FiLM starts at zero (identity): give it something to do
        nn.init.normal_(layer.weight, std=0.5)
        nn.init.normal_(layer.bias, std=0.5)
    x = torch.randn(3, 1, 24, generator=torch.Generator().manual_seed(0))
    tau = torch.tensor([0.1, -0.4, 0.8])
    tau_changed = tau.clone()
    tau_changed[1] = 0.6
    with torch.no_grad():
        a, b = model(x, tau, grid), model(x, tau_changed, grid)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert (a[1] - b[1]).abs().max() > 1e-3
    torch.testing.assert_close(b[[0, 2]], a[[0, 2]], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "grid", [RectGrid((0.0, 1.0), (0.0, 2.0), (10, 13)), PeriodicGrid((1.0, 1.0), (8, 12))]
)
def test_fno_on_2d_grids(grid):
    model = small_fno(dim=2, channels=2)
    x = torch.randn(2, 2, *grid.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, torch.zeros(2), grid)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.std() > 0


def test_fno_grid_errors():
    model = small_fno()
    rect = RectGrid((0.0, 1.0), (0.0, 1.0), (6, 7))
    with pytest.raises(GridError, match="takes 1-D grids, got a 2-D grid"):
        model(torch.zeros(1, 1, 6, 7), torch.zeros(1), rect)
    line = IntervalGrid(0.0, 1.0, 6)
    with pytest.raises(
        GridError, match=r"expected fields of shape \(batch, 1, .*got \(1, 1, 6, 7\)"
    ):
        model(torch.zeros(1, 1, 6, 7), torch.zeros(1), line)
    with pytest.raises(GridError, match=r"expected fields of shape \(batch, 1, .*got \(1, 2, 6\)"):
        model(torch.zeros(1, 2, 6), torch.zeros(1), line)
    with pytest.raises(GridError, match=r"does not match grid \(6,\)"):
        model(torch.zeros(1, 1, 7), torch.zeros(1), line)
    with pytest.raises(GridError, match=r"at least 4 points per axis, got \(3,\)"):
        model(torch.zeros(1, 1, 3), torch.zeros(1), IntervalGrid(0.0, 1.0, 3))
    with pytest.raises(GridError, match=r"one noise level per field, shape \(2,\), got \(1,\)"):
        model(torch.zeros(2, 1, 6), torch.zeros(1), line)
    assert issubclass(GridError, ValueError)
    with pytest.raises(ValueError, match="1 or 2 spatial axes, got 3"):
        TimeConditionedFNO(dim=3)


def test_fno_chunk_size_keeps_the_hidden_activation_within_the_budget():
    model = small_fno(dim=2)  # width 8, float32: 32 bytes per point and sample
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (17, 9))  # extended to 32 × 16 = 512 points
    x = torch.zeros(10, 1, 17, 9)
    per_sample = 512 * 8 * 4
    model.cpu_chunk_bytes = 3 * per_sample
    assert model.chunk_size(x, grid) == 3  # 10 samples in 4 chunks of ≤ 3: 3, 3, 3, 1
    model.cpu_chunk_bytes = 5 * per_sample + 1
    assert model.chunk_size(x, grid) == 5
    model.cpu_chunk_bytes = 4 * per_sample  # 3 chunks of ≤ 4 → balanced chunks of 4, 4, 2
    assert model.chunk_size(x, grid) == 4
    model.cpu_chunk_bytes = 1  # below one sample: one at a time
    assert model.chunk_size(x, grid) == 1
    model.cpu_chunk_bytes = 0  # off
    assert model.chunk_size(x, grid) == 10
    periodic = PeriodicGrid((1.0, 1.0), (16, 32))  # periodic axes are not extended
    model.cpu_chunk_bytes = 2 * per_sample
    assert model.chunk_size(x.new_zeros(10, 1, 16, 32), periodic) == 2


def test_fno_chunked_batch_gives_the_whole_batch_output_and_gradients():
    grid = RectGrid((0.0, 1.0), (0.0, 2.0), (12, 10))
    model = small_fno(dim=2)
    for layer in model.film:
        nn.init.normal_(layer.weight, std=0.5)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 1, 12, 10, generator=gen).requires_grad_()
    tau = torch.randn(7, generator=gen)
    model.cpu_chunk_bytes = 0
    whole = model(x, tau, grid)
    (grad_whole,) = torch.autograd.grad(whole.square().sum(), x)
    model.cpu_chunk_bytes = 2 * 22 * 18 * 8 * 4  # two samples per chunk: 4 chunks
    assert model.chunk_size(x, grid) == 2
    chunked = model(x, tau, grid)
    (grad_chunked,) = torch.autograd.grad(chunked.square().sum(), x)
    assert chunked.shape == whole.shape and whole.abs().max() > 1e-3
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_chunked, grad_whole, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- preconditioning


class OracleBackbone(nn.Module):
    """Returns a fixed tensor: the exact training target for known (x0, ξ, t)."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, x, c_noise, grid):
        assert c_noise.shape == (x.shape[0],)
        return self.output


@pytest.mark.parametrize("parameterisation", ["v", "eps"])
@pytest.mark.parametrize("schedule", [CosineVP(), LinearVP()])
def test_exact_backbone_gives_exact_denoiser(parameterisation, schedule, seeded):
    grid = IntervalGrid(0.0, 1.0, 16)
    process = ForwardProcess(schedule, SpectralCovariance("se", 0.1))
    x0 = 1.5 + process.noise(5, 2, grid, generator=seeded(0), dtype=torch.float64)
    xi = process.noise(5, 2, grid, generator=seeded(1), dtype=torch.float64)
    t = torch.linspace(schedule.t_min, schedule.t_max, 5, dtype=torch.float64)
    xt = process.perturb(x0, t, xi)
    denoiser = PreconditionedDenoiser(nn.Identity(), process, parameterisation)
    denoiser.backbone = OracleBackbone(denoiser.training_target(x0, xi, t))
    out = denoiser(xt, t, grid)
    assert out.shape == x0.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)


def test_unknown_parameterisation():
    with pytest.raises(ValueError, match=r"unknown parameterisation 'x0'.*'v', 'eps'"):
        PreconditionedDenoiser(nn.Identity(), PROCESS, "x0")


# ----------------------------------------------------------------------------- loss


def test_denoising_loss_is_a_seeded_scalar(seeded):
    grid = IntervalGrid(0.0, 1.0, 20)
    denoiser = PreconditionedDenoiser(small_fno(), PROCESS)
    x0 = PROCESS.noise(4, 1, grid, generator=seeded(0))
    loss = denoising_loss(denoiser, x0, grid, generator=seeded(1))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    assert loss.requires_grad
    assert denoising_loss(denoiser, x0, grid, generator=seeded(1)).item() == loss.item()
    assert denoising_loss(denoiser, x0, grid, generator=seeded(2)).item() != loss.item()


@pytest.mark.parametrize(
    "grid",
    [
        IntervalGrid(0.0, 3.0, 7),
        PeriodicGrid((2.0,), (10,)),
        RectGrid((0.0, 1.0), (0.0, 2.0), (5, 6)),
        LatLonGrid.regular((20.0, 70.0), (0.0, 360.0), (6, 8)),
    ],
)
def test_weighted_mean_square_of_a_constant(grid):
    residual = torch.full((3, 2, *grid.shape), -1.7, dtype=torch.float64)
    value = weighted_mean_square(residual, grid)
    assert value.ndim == 0 and torch.isfinite(value)
    assert value.item() == pytest.approx(1.7**2, rel=1e-12)


def test_weighted_mean_square_is_the_l2_mean_at_any_resolution():
    # (1/|D|) ∫_0^1 sin²(2πx) dx = 1/2, whatever the number of points
    for n in (9, 33, 129):
        grid = IntervalGrid(0.0, 1.0, n)
        u = torch.sin(2 * math.pi * torch.as_tensor(grid.coords()[0])).reshape(1, 1, n)
        assert weighted_mean_square(u, grid).item() == pytest.approx(0.5, abs=1e-12)


def _static_provider(grid):
    """Two static fields known on any 2-D grid: a 'land' step and a smooth 'height'."""
    lat, lon = np.meshgrid(*grid.coords(), indexing="ij")
    return np.stack([(lon > 0.5).astype(float), 100.0 * np.sin(3 * lat) + 50.0])


def test_static_inputs_are_normalised_on_the_training_grid_and_cached():
    from hdm.hilbert.grids import RectGrid
    from hdm.hilbert.statics import StaticInputs

    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (12, 16))
    statics = StaticInputs(["land", "height"], _static_provider).fit(grid)
    s = statics(grid, dtype=torch.float64)
    w = torch.as_tensor(grid.weights() / grid.weights().sum())
    assert s.shape == (2, 12, 16) and torch.isfinite(s).all()
    torch.testing.assert_close((s * w).sum((1, 2)), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close((s**2 * w).sum((1, 2)), torch.ones(2, dtype=torch.float64))
    assert grid in statics._cache
    fine = grid.refined(2)  # the same normalisation on a finer grid: shared points agree
    torch.testing.assert_close(statics(fine, dtype=torch.float64)[:, ::2, ::2], s)


def test_a_model_with_static_channels_uses_them_and_names_what_is_missing():
    from hdm.hilbert.grids import RectGrid
    from hdm.hilbert.statics import StaticInputs

    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (12, 16))
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.2, 1.5))
    torch.manual_seed(0)
    backbone = TimeConditionedFNO(dim=2, channels=2, width=8, n_modes=4, n_layers=1,
                                  static_channels=2)  # fmt: skip
    statics = StaticInputs(["land", "height"], _static_provider).fit(grid)
    with_statics = PreconditionedDenoiser(backbone, process, "v", statics)
    x = torch.randn(3, 2, 12, 16, generator=torch.Generator().manual_seed(1))
    t = torch.full((3,), 0.5, dtype=torch.float64)
    out = with_statics(x, t, grid)
    assert out.shape == x.shape and torch.isfinite(out).all()
    other = StaticInputs(["land", "height"], lambda g: 1 - _static_provider(g)).fit(grid)
    assert not torch.allclose(
        out, PreconditionedDenoiser(backbone, process, "v", other)(x, t, grid)
    )
    with pytest.raises(GridError, match="needs 2 static input field"):
        PreconditionedDenoiser(backbone, process, "v")(x, t, grid)
