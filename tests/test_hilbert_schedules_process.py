"""Tests of hdm.hilbert.schedules and hdm.hilbert.process: VP identities, inverses,
β = −2 d log α/dt, and the marginals of the forward process."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hdm.hilbert.covariance import KernelCovariance, SpectralCovariance
from hdm.hilbert.grids import IntervalGrid, RectGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP, LinearVP, schedule_from_dict

SCHEDULES = [CosineVP(), LinearVP(), CosineVP(s=0.02, t_max=0.99), LinearVP(0.05, 10.0)]


def times(schedule, n: int = 50) -> torch.Tensor:
    return torch.linspace(schedule.t_min, schedule.t_max, n, dtype=torch.float64)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_variance_preserving(schedule):
    t = times(schedule)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    assert alpha.shape == sigma.shape == t.shape and torch.isfinite(sigma).all()
    assert ((alpha > 0) & (alpha <= 1) & (sigma > 0)).all()
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_beta_is_minus_twice_the_log_alpha_derivative(schedule):
    t = torch.linspace(schedule.t_min + 0.01, schedule.t_max - 0.01, 40, dtype=torch.float64)
    h = 1e-6
    fd = -2 * (schedule.log_alpha(t + h) - schedule.log_alpha(t - h)) / (2 * h)
    beta = schedule.beta(t)
    assert beta.shape == t.shape and (beta > 0).all()
    torch.testing.assert_close(beta, fd, rtol=1e-6, atol=0)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_time_inverses_round_trip(schedule):
    t = times(schedule)
    back = schedule.t_from_log_snr(schedule.log_snr(t))
    assert back.shape == t.shape and torch.isfinite(back).all()
    torch.testing.assert_close(back, t, rtol=0, atol=1e-9)
    torch.testing.assert_close(schedule.t_from_varsigma(schedule.varsigma(t)), t, rtol=0, atol=1e-9)
    # log-SNR decreases strictly in time (so the inverse is well defined)
    assert (schedule.log_snr(t).diff() < 0).all()


@pytest.mark.parametrize("schedule", [CosineVP(), LinearVP()])
def test_end_points_are_data_and_noise(schedule):
    a_min = float(schedule.alpha(torch.tensor(schedule.t_min)))
    a_max = float(schedule.alpha(torch.tensor(schedule.t_max)))
    assert a_min == pytest.approx(1.0, abs=1e-3)
    assert a_max < 0.01


def test_cosine_matches_hdm_formula():
    s, t = 0.008, torch.tensor([1e-5, 0.3, 0.9946], dtype=torch.float64)
    expected = torch.cos((t + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)
    torch.testing.assert_close(CosineVP().alpha(t), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_dict_round_trip(schedule):
    back = schedule_from_dict(json.loads(json.dumps(schedule.to_dict())))
    assert back == schedule and type(back) is type(schedule)


def test_unknown_schedule_kind():
    with pytest.raises(ValueError, match=r"unknown schedule 've'.*'cosine', 'linear'"):
        schedule_from_dict({"kind": "ve"})


# ------------------------------------------------------------------------- process

GRID = IntervalGrid(0.0, 1.0, 9)


def test_noise_shape_and_independent_channels(seeded):
    grid = RectGrid((0.0, 1.0), (0.0, 2.0), (5, 7))
    process = ForwardProcess(CosineVP(), SpectralCovariance("se", 0.3))
    xi = process.noise(3, 2, grid, generator=seeded(0))
    assert xi.shape == (3, 2, 5, 7) and xi.dtype == torch.float32 and torch.isfinite(xi).all()
    assert (xi[:, 0] - xi[:, 1]).abs().max() > 0.1  # channels are different draws
    prior = process.prior_sample(3, 2, grid, generator=seeded(0))
    torch.testing.assert_close(prior, xi, rtol=0, atol=0)


def test_perturb_at_t_min_returns_x0(seeded):
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.2, 1.5))
    x0 = process.noise(4, 1, GRID, generator=seeded(1)) + 3.0
    xi = process.noise(4, 1, GRID, generator=seeded(2))
    t = torch.full((4,), process.schedule.t_min, dtype=torch.float64)
    xt = process.perturb(x0, t, xi)
    assert xt.shape == x0.shape and xt.dtype == x0.dtype
    # σ(t_min) ≈ 6e-4 for the cosine schedule
    torch.testing.assert_close(xt, x0, rtol=0, atol=5e-3)


def test_marginal_of_zero_data_has_covariance_sigma2_q(seeded):
    n = 8_000
    process = ForwardProcess(LinearVP(), SpectralCovariance("se", 0.2))
    t = torch.full((n,), 0.3, dtype=torch.float64)
    xi = process.noise(n, 1, GRID, generator=seeded(3))
    xt = process.perturb(torch.zeros(n, 1, 9), t, xi)
    assert xt.shape == (n, 1, 9) and torch.isfinite(xt).all()
    x = xt.reshape(n, 9).to(torch.float64).numpy()
    sigma2 = float(process.schedule.sigma(torch.tensor(0.3))) ** 2
    expected = sigma2 * process.covariance.dense(GRID)
    rms = math.sqrt((np.trace(expected) ** 2 + np.linalg.norm(expected) ** 2) / n)
    assert np.linalg.norm(x.T @ x / n - expected) <= 2.5 * rms


def test_sample_times_are_in_range_and_seeded(seeded):
    process = ForwardProcess(CosineVP(), SpectralCovariance())
    t = process.sample_times(1000, generator=seeded(0))
    assert t.shape == (1000,) and t.dtype == torch.float64
    assert t.min() >= process.schedule.t_min and t.max() <= process.schedule.t_max
    torch.testing.assert_close(process.sample_times(1000, generator=seeded(0)), t)


@pytest.mark.parametrize(
    "process",
    [
        ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.05, 1.5)),
        ForwardProcess(LinearVP(0.1, 12.0), KernelCovariance("se", 0.2)),
    ],
)
def test_process_dict_round_trip(process):
    back = ForwardProcess.from_dict(json.loads(json.dumps(process.to_dict())))
    assert back == process
