"""Winds on the sphere: a spherical Q whose wind pair is one tangent vector field, the
normalisation it needs, and the denoiser that keeps to Q's range (issue: the whole globe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hdm.data.normalization import FieldNormaliser, VariableStats
from hdm.domains.shallow_water import ShallowWaterConfig, simulate
from hdm.hilbert.covariance import SphericalCovariance, covariance_from_dict
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.grids import GlobalGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP
from hdm.pipelines.config import NoiseConfig

GRID = GlobalGrid.make(17, 32)
WINDS = SphericalCovariance("matern", 30.0, 1.5, band_limit=6, vector=(1, 2))


def test_each_wind_component_has_unit_variance_at_the_poles_and_the_equator():
    """A vector pair drawn as ∇χ + r̂×∇ψ: E u² = E v² = Σ_{1≤ℓ<L} (2ℓ+1)/(4π) μ_ℓ at every
    point (the vector addition theorem), u and v uncorrelated at a point, over 3,000 draws."""
    draws = WINDS.sample_channels(3000, 3, GRID, torch.Generator().manual_seed(0), torch.float64)
    mu = WINDS.vector_degree_eigenvalues(GRID.max_degree)
    expected = float(np.sum((2 * np.arange(len(mu)) + 1) * mu) / (4 * math.pi))
    variance = draws.var(0)
    for c in (1, 2):
        np.testing.assert_allclose(variance[c].numpy(), expected, rtol=0.12)
    np.testing.assert_allclose(variance[c, [0, -1]].mean(), expected, rtol=0.06)
    cross = (draws[:, 1] * draws[:, 2]).mean(0)
    assert float(cross.abs().max()) < 0.12 * expected


def test_the_wind_draws_have_the_covariance_q_applies():
    """E[ξ ξ(x)] = Q e_x (Q as the covariance matrix on grid values): at a point next to
    the pole, for the wind's northward component, the draws' covariance with every
    channel is what ``apply`` gives."""
    draws = WINDS.sample_channels(4000, 3, GRID, torch.Generator().manual_seed(1), torch.float64)
    delta = torch.zeros(1, 3, *GRID.shape, dtype=torch.float64)
    delta[0, 2, 15, 7] = 1.0
    column = WINDS.apply(delta, GRID)[0]
    empirical = (draws * draws[:, 2, 15, 7][:, None, None, None]).mean(0)
    assert float((column - empirical).abs().max()) < 0.08 * float(column.abs().max())
    assert float(column[0].abs().max()) == 0.0  # the height channel is independent


def test_the_solver_s_winds_lie_in_q_s_range_and_per_component_noise_does_not():
    """Π (the projection onto the winds of band-limited stream function and potential)
    keeps the shallow-water solver's states (truncated vorticity and divergence) and Q's own
    draws, is idempotent, and removes most of a pair of independent scalar draws."""
    cfg = ShallowWaterConfig(
        nlat=17, nlon=32, trajectories=1, states=2, spin_up_hours=6.0, every_hours=6.0,
        dt_seconds=600.0,
    )  # fmt: skip
    states = torch.as_tensor(simulate(cfg, 0), dtype=torch.float64)
    winds = SphericalCovariance("matern", 30.0, 1.5, band_limit=cfg.degrees, vector=(1, 2))
    kept = winds.project_field(states, GRID)
    assert float((kept - states).norm() / states.norm()) < 1e-6
    draws = WINDS.sample_channels(4, 3, GRID, torch.Generator().manual_seed(2), torch.float64)
    torch.testing.assert_close(WINDS.project_field(draws, GRID), draws)
    scalar = SphericalCovariance("matern", 30.0, 1.5, band_limit=6)
    pair = scalar.sample(8, GRID, torch.Generator().manual_seed(3), torch.float64)
    fields = torch.stack([pair[:4], pair[:4], pair[4:]], dim=1)
    projected = WINDS.project_field(fields, GRID)
    torch.testing.assert_close(WINDS.project_field(projected, GRID), projected)
    lost = (fields - projected)[:, 1:].norm() / fields[:, 1:].norm()
    assert float(lost) > 0.2


def test_one_seed_draws_the_same_winds_on_two_resolutions():
    """A band-limited wind draw is one function: equal at the shared points of 17 × 32 and
    33 × 64 for one seed."""
    coarse = WINDS.sample_channels(3, 3, GRID, torch.Generator().manual_seed(4), torch.float64)
    fine = WINDS.sample_channels(
        3, 3, GRID.refined(2), torch.Generator().manual_seed(4), torch.float64
    )
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, atol=1e-5, rtol=1e-4)


def test_the_denoiser_fixes_what_q_never_perturbs():
    """With a Q of restricted range, D(x_t)'s part outside it is (I − Π) x_t / α, whatever
    the network says, and the "v" target there is met exactly: the loss sees only the range."""
    torch.manual_seed(0)
    process = ForwardProcess(CosineVP(), WINDS)

    class Wild(torch.nn.Module):
        def forward(self, x, tau, grid):
            return 3.0 * torch.randn_like(x)

    denoiser = PreconditionedDenoiser(Wild(), process, "v")
    x = torch.randn(2, 3, *GRID.shape, dtype=torch.float64)
    t = torch.tensor([0.3, 0.9], dtype=torch.float64)
    d = denoiser(x, t, GRID)
    alpha = process.schedule.alpha(t)[:, None, None, None]
    outside = x - WINDS.project_field(x, GRID)
    # to the transforms' single-precision Legendre tables (torch-harmonics 0.8)
    torch.testing.assert_close(
        d - WINDS.project_field(d, GRID), outside / alpha, atol=1e-5, rtol=1e-5
    )
    x0 = torch.randn(2, 3, *GRID.shape, dtype=torch.float64)
    xi = process.noise(2, 3, GRID, torch.Generator().manual_seed(5), torch.float64)
    xt = process.perturb(x0, t, xi)
    residual = denoiser.network_output(xt, t, GRID) - denoiser.training_target(x0, xi, t)
    torch.testing.assert_close(
        residual - WINDS.project_field(residual, GRID),
        torch.zeros_like(residual),
        atol=1e-5,
        rtol=0,
    )


def test_the_wind_pair_is_normalised_alike_and_unshifted():
    """with_vector: mean 0 and s = √((s_u² + m_u² + s_v² + m_v²)/2) for both, the rest kept."""
    normaliser = FieldNormaliser(
        (
            VariableStats("h", (1e4,), (300.0,), units="m"),
            VariableStats("u", (4.0,), (15.0,), units="m s-1"),
            VariableStats("v", (-1.0,), (12.0,), units="m s-1"),
        )
    )
    paired = normaliser.with_vector("u", "v")
    scale = math.sqrt((15.0**2 + 4.0**2 + 12.0**2 + 1.0**2) / 2)
    assert paired.stats("u").at(None) == paired.stats("v").at(None) == (0.0, scale)
    assert paired.stats("h") == normaliser.stats("h")
    with pytest.raises(KeyError, match="no statistics for variable 'w'"):
        normaliser.with_vector("u", "w")


def test_a_wind_pair_is_named_by_the_model_s_variables_on_the_sphere_only():
    noise = NoiseConfig(kind="spherical", kernel="matern", lengthscale=30.0, vector=["u", "v"])
    q = noise.build(["h", "u", "v"])
    assert q.vector == (1, 2) and covariance_from_dict(q.to_dict()) == q
    assert "a wind vector" in q.describe()
    with pytest.raises(ValueError, match=r"noise.vector names \['v'\], not among .*\['h', 'u'\]"):
        noise.build(["h", "u"])
    with pytest.raises(ValueError, match=r"noise\.vector is a setting of noise\.kind: spherical"):
        NoiseConfig(kind="spectral", vector=["u", "v"]).build(["u", "v"])
    with pytest.raises(ValueError, match="two different channel indices"):
        SphericalCovariance("matern", 30.0, 1.5, vector=(1, 1))
    with pytest.raises(ValueError, match="draws its channels together"):
        WINDS.sample(2, GRID)
    with pytest.raises(ValueError, match="couples two channels: it has no matrix"):
        WINDS.dense(GRID)
    with pytest.raises(ValueError, match=r"vector pair of Q is channels \(1, 2\), .* 2 channel"):
        WINDS.sample_channels(1, 2, GRID)


def test_real_global_winds_are_normalised_as_one_vector():
    """The shipped ERA5 1° sample with noise.vector [u10, v10]: the training data's u10 and
    v10 share one scale, the root-mean-square component (area-weighted), and no shift;
    the model's Q pairs their channels."""
    from test_sphere import _era5_global_config

    from hdm.pipelines.train import build_model, channel_names, training_data

    cfg = _era5_global_config("data.variables=[t2m,u10,v10]", "noise.vector=[u10,v10]")
    data = training_data(cfg)
    u, v = data.normaliser.stats("u10").at(None), data.normaliser.stats("v10").at(None)
    assert u == v and u[0] == 0.0
    weights = np.cos(np.deg2rad(data.dataset["lat"]))
    square = [float((data.dataset[n] ** 2).weighted(weights).mean()) for n in ("u10", "v10")]
    assert math.isclose(u[1], math.sqrt(sum(square) / 2), rel_tol=1e-3)
    model = build_model(cfg, data.grid, 3, None, channel_names(data))
    assert model.process.covariance.vector == (1, 2)
