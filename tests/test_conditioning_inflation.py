"""Adaptive inflation (hdm.conditioning.inflation): the observed part of the spread is kept,
the rest scaled; λ recovered from station residuals; options and errors."""

from __future__ import annotations

from pathlib import Path

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

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "shallow_water"
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


# ---------------------------------------------------------------- several channels


def _two_channel_operator() -> Composite:
    """Coarse cells of channel 0 and stations of channel 1 (as a joint prior's are)."""
    coarse = CoarseGrain.from_factor(GRID, 4, noise=0.01, channel=0)
    stations = PointSample(STATIONS, 0.1, tuple(f"S{i}" for i in range(6)), channel=1)
    return Composite((coarse, stations))


def _two_channel_members(m: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    return torch.randn((m, 2, *GRID.shape), generator=gen, dtype=torch.float64)


def test_inflation_of_two_channels_keeps_every_members_observed_values():
    op = _two_channel_operator()
    x = _two_channel_members()
    out = inflate_members(x, op, np.zeros(op.n_obs()), GRID, 1.5)
    torch.testing.assert_close(op.apply(out, GRID), op.apply(x, GRID))


def test_a_channel_no_observation_reads_is_inflated_whole():
    """A is the operator over all channels: a channel without rows is all δ_⊥."""
    op = Composite((CoarseGrain.from_factor(GRID, 4, noise=0.01, channel=0),))
    x = _two_channel_members()
    out = inflate_members(x, op, np.zeros(op.n_obs()), GRID, 1.5)
    torch.testing.assert_close(out[:, 1] - out[:, 1].mean(0), 1.5 * (x[:, 1] - x[:, 1].mean(0)))


def test_auto_names_several_coarse_fields():
    denoiser, _ = _gaussian_prior()
    coarse = [CoarseGrain.from_factor(GRID, 4, 0.01, f"coarse {v}", c) for c, v in enumerate("hu")]
    op = Composite((*coarse, PointSample(STATIONS, 0.1)))
    y = np.zeros((1, op.n_obs()))
    with pytest.raises(ObservationError, match=r"got several \(coarse h, coarse u\)"):
        estimate_inflation(denoiser, GRID, op, y, InflationConfig(draws=2))


@pytest.fixture(scope="module")
def sw_state():
    """One shallow-water state (h, u, v) on the shipped spherical prior's 33 × 64 grid."""
    import xarray as xr

    from hdm.domains.shallow_water import ShallowWaterConfig, simulate
    from hdm.hilbert.grids import GlobalGrid

    cfg = ShallowWaterConfig(nlat=33, nlon=64, trajectories=1, states=1, spin_up_hours=48.0)
    data = simulate(cfg, 0)
    lat, lon = GlobalGrid.make(33, 64).coords()
    time = np.array(["2000-01-01T00"], dtype="datetime64[ns]")
    units = {"h": "m", "u": "m s-1", "v": "m s-1"}
    return xr.Dataset(
        {v: (("time", "lat", "lon"), data[:, c], {"units": units[v]}) for c, v in enumerate(units)},
        coords={"time": time, "lat": lat, "lon": lon},
    )


def _h_stations(state):
    from hdm.domains.stations import igra2_worldwide, simulate_observations, stations_by_id

    obs = simulate_observations(state["h"], stations_by_id(igra2_worldwide(6)[1]), 0.5, 0)
    return obs.assign_coords(variable=("obs", np.full(obs.sizes["obs"], "h")))


def test_a_number_inflates_a_three_channel_prior_keeping_its_cell_means(sw_state):
    """hdm.downscale(inflation=1.5) on the shipped h, u, v prior: the members' sphere cell
    means are those of the same members uninflated, on every channel."""
    import hdm
    from hdm.data.coarsen import coarse_grain_sphere

    coarse = coarse_grain_sphere(sw_state, 4)
    kw = {"members": 2, "steps": 8, "progress": False}
    runs = [
        hdm.downscale(SHIPPED, coarse, _h_stations(sw_state), inflation=lam, **kw)
        for lam in (None, 1.5)
    ]
    plain, inflated = (coarse_grain_sphere(r[["h", "u", "v"]], 4) for r in runs)
    for v in ("h", "u", "v"):
        scale = float(sw_state[v].std())
        np.testing.assert_allclose(inflated[v], plain[v], rtol=0, atol=1e-4 * scale, err_msg=v)


def test_auto_on_a_three_channel_prior_is_refused_by_its_channels_before_drawing(
    sw_state, monkeypatch
):
    """Only h coarse and h stations: the refusal names the prior's channels (not the
    covariance's vector pair) and comes before any member is drawn."""
    import hdm
    import hdm.downscaling.core as core
    from hdm.data.coarsen import coarse_grain_sphere

    def drawn(*args, **kwargs):
        raise AssertionError("members drawn before the refusal")

    monkeypatch.setattr(core, "_draw_ensemble", drawn)
    coarse = coarse_grain_sphere(sw_state, 4)[["h"]]
    with pytest.raises(
        ObservationError,
        match=r"^inflation 'auto' is estimated for one-channel priors; the model \S+ has 3 "
        r"channels \(h, u, v\): give a number \(the same λ for every channel\) or none$",
    ):
        hdm.downscale(SHIPPED, coarse, _h_stations(sw_state), inflation="auto", progress=False)


def test_hdm_downscale_auto_on_a_three_channel_prior_exits_2_and_leaves_no_store(
    sw_state, tmp_path, capsys
):
    from hdm.domains.stations import igra2_worldwide
    from hdm.pipelines.cli import main

    truth = tmp_path / "sw.nc"
    sw_state.to_netcdf(truth)
    out = tmp_path / "out.zarr"
    args = ["downscale", str(SHIPPED), "--truth", str(truth), "--factor", "4"]
    args += ["--simulate-stations", ",".join(igra2_worldwide(6)[1]), "--members", "2"]
    args += ["--steps", "8", "--inflation", "auto", "--out", str(out)]
    args += ["--no-plots", "--no-progress"]
    assert main(args) == 2
    assert "has 3 channels (h, u, v)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sw.nc"]
