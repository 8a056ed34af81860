"""Adaptive inflation (hdm.conditioning.inflation): the observed part of the spread is kept,
the rest scaled; λ recovered from station residuals; options and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdm.conditioning.inflation import (
    InflationConfig,
    estimate_inflation,
    inflate_members,
    parse_inflation,
    station_residuals,
)
from hdm.conditioning.observations import CoarseGrain, Composite, ObservationError, PointSample
from hdm.hilbert.covariance import SpectralCovariance
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.grids import LatLonGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP

GRID = LatLonGrid.regular((50.0, 55.5), (-6.0, 1.5), (12, 16))  # 0.5° spacing
STATIONS = ((51.2, -4.1), (52.7, -1.3), (53.9, 0.4), (54.6, -3.3), (50.9, -0.2), (52.1, -5.2))


def _operator(station_noise: float = 0.1) -> Composite:
    coarse = CoarseGrain.from_factor(GRID, 4, noise=0.01)
    stations = PointSample(STATIONS, station_noise, tuple(f"S{i}" for i in range(6)))
    return Composite((coarse, stations))


def _members(m: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((m, 1, *GRID.shape), generator=gen, dtype=torch.float64)


def test_inflation_keeps_the_mean_and_every_members_observed_values():
    op = _operator()
    x = _members()
    y = np.zeros(op.n_obs())
    out = inflate_members(x, op, y, GRID, 1.7)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.mean(0), x.mean(0))
    torch.testing.assert_close(op.apply(out, GRID), op.apply(x, GRID))
    # The unobserved part grows by exactly λ: deviations of out − (its observed part).
    a = torch.as_tensor(op.matrix(GRID))
    dev_in = (x - x.mean(0)).reshape(8, -1)
    dev_out = (out - out.mean(0)).reshape(8, -1)
    project = a.T @ torch.linalg.solve(a @ a.T, a)  # onto the observed rows' span
    torch.testing.assert_close(dev_out - dev_out @ project, 1.7 * (dev_in - dev_in @ project))
    assert dev_out.norm() > 1.3 * dev_in.norm()


def test_a_missing_station_value_frees_that_row():
    op = _operator()
    x = _members()
    y = np.zeros(op.n_obs())
    y[-1] = np.nan  # the last station has no observation at this time
    out = inflate_members(x, op, y, GRID, 2.0)
    before, after = op.apply(x, GRID), op.apply(out, GRID)
    torch.testing.assert_close(after[:, :-1], before[:, :-1])
    assert not torch.allclose(after[:, -1], before[:, -1])


def test_residuals_of_a_linear_field_vanish():
    """Cell means of a field linear in longitude are its values at the cell centres (the
    cos-latitude weights only act along latitude), and bilinear interpolation
    (extrapolation at the edges) reproduces a linear field exactly."""
    op = _operator()
    coarse, stations = op.parts
    _, lon = np.meshgrid(*GRID.coords(), indexing="ij")
    field = torch.as_tensor(280.0 - 0.3 * lon)[None, None]
    r = station_residuals(
        coarse,
        stations,
        GRID,
        coarse.apply(field, GRID).numpy(),
        stations.apply(field, GRID).numpy(),
    )
    assert r.shape == (1, 6)
    np.testing.assert_allclose(r, 0.0, atol=1e-9)


def _gaussian_prior():
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 1.0, nu=1.5))
    cov = process.covariance.dense(GRID)  # the prior: X ~ N(0, Q) on the grid
    return GaussianDenoiser(process, GRID, cov), cov


@pytest.mark.parametrize("scale", [1.4, 1.0])
def test_the_factor_is_recovered_when_the_world_varies_more_than_the_prior(scale):
    """Fields drawn from N(0, s² C) observed through coarse cells and stations, a prior
    N(0, C): λ ≈ s (s = 1: the prior is right, λ ≈ 1 at the lower bound)."""
    denoiser, cov = _gaussian_prior()
    op = _operator(station_noise=0.1)
    rng = np.random.default_rng(3)
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(GRID.size))
    truth = scale * (chol @ rng.standard_normal((GRID.size, 300))).T
    truth = torch.as_tensor(truth.reshape(300, 1, *GRID.shape))
    y = op.simulate(truth, GRID, torch.Generator().manual_seed(4)).numpy()
    cfg = InflationConfig(draws=300, steps=50, batch_size=100, bounds=(0.5, 2.0), seed=1)
    est = estimate_inflation(denoiser, GRID, op, y, cfg)
    assert est.n_innovations == 300 * 6 and est.draws == 300
    assert est.noise_var == pytest.approx(0.01)
    assert est.factor == pytest.approx(scale, rel=0.1)


def test_auto_needs_a_coarse_field_and_stations():
    denoiser, _ = _gaussian_prior()
    stations = PointSample(STATIONS, 0.1)
    with pytest.raises(ObservationError, match="needs one coarse field and station"):
        estimate_inflation(denoiser, GRID, stations, np.zeros((1, 6)), InflationConfig(draws=2))


def test_options_are_checked():
    assert parse_inflation(None) is None
    assert parse_inflation("none") is None
    assert parse_inflation("1") is None
    assert parse_inflation("AUTO") == "auto"
    assert parse_inflation("1.25") == 1.25
    for bad in ("0.8", "x", "nan"):
        with pytest.raises(ValueError, match="inflation must be 'none', 'auto' or a number"):
            parse_inflation(bad)
    with pytest.raises(ValueError, match="bounds"):
        InflationConfig(bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="at least 2 prior draws"):
        InflationConfig(draws=1)
