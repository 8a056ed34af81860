"""Tests for hdm.metrics.probabilistic: each asserts one property on tiny synthetic fields."""

import math

import numpy as np
import pytest
import scoringrules as sr
import xarray as xr
from scipy import stats

from hdm.data.coarsen import coarse_grain
from hdm.metrics.probabilistic import (
    bias,
    coarse_consistency,
    coverage,
    fair_crps,
    gaussian_coverage,
    gaussian_crps,
    mae,
    power_spectrum,
    rank_histogram,
    rmse,
    spectrum_ratio,
    spread_skill,
    spread_skill_by_band,
    spread_skill_interval,
)


def grid_field(values, lat=None, lon=None, lead=("time",)):
    """A DataArray (*lead, lat, lon) with regular coordinates."""
    values = np.asarray(values, dtype=np.float64)
    n_lat, n_lon = values.shape[-2:]
    lat = np.linspace(-30.0, 30.0, n_lat) if lat is None else lat
    lon = np.linspace(0.0, 40.0, n_lon) if lon is None else lon
    dims = (*lead[: values.ndim - 2], "lat", "lon")
    return xr.DataArray(values, dims=dims, coords={"lat": lat, "lon": lon})


def ensemble_field(values, lat=None, lon=None):
    """(member, time, lat, lon) from an array with members first."""
    return grid_field(values, lat, lon, lead=("member", "time"))


def test_rmse_of_constant_offset_is_its_size_and_bias_its_sign():
    rng = np.random.default_rng(0)
    truth = grid_field(rng.standard_normal((3, 5, 6)))
    assert float(rmse(truth - 0.7, truth)) == pytest.approx(0.7)
    assert float(mae(truth - 0.7, truth)) == pytest.approx(0.7)
    assert float(bias(truth - 0.7, truth)) == pytest.approx(-0.7)


def test_high_latitude_error_counts_less_than_unweighted():
    lat = np.array([0.0, 30.0, 60.0, 80.0])
    truth = grid_field(np.zeros((1, 4, 3)), lat=lat)
    pred = truth.copy()
    pred[0, 3, :] = 1.0  # error only at 80°N
    w = np.cos(np.deg2rad(lat))
    assert float(rmse(pred, truth)) == pytest.approx(math.sqrt(w[3] / w.sum()))
    assert float(rmse(pred, truth)) < 0.6 * math.sqrt(3 / 12)  # unweighted: 0.5


def test_mismatched_coordinates_and_missing_member_are_named():
    truth = grid_field(np.zeros((1, 4, 3)))
    shifted = truth.assign_coords(lat=truth.lat + 1.0)
    with pytest.raises(ValueError, match="coordinate 'lat' differs"):
        rmse(shifted, truth)
    with pytest.raises(ValueError, match="'member'"):
        fair_crps(truth, truth)
    with pytest.raises(ValueError, match="at least 2 members"):
        fair_crps(truth.expand_dims(member=1), truth)


def test_nan_points_are_left_out():
    truth = grid_field(np.zeros((1, 3, 3)))
    pred = truth + 2.0
    pred[0, 0, 0] = np.nan
    assert float(rmse(pred, truth)) == pytest.approx(2.0)


def test_fair_crps_zero_when_all_members_equal_truth():
    truth = grid_field(np.random.default_rng(1).standard_normal((2, 3, 4)))
    ens = xr.concat([truth] * 5, dim="member").transpose("member", ...)
    assert float(fair_crps(ens, truth)) == pytest.approx(0.0, abs=1e-12)


def test_fair_crps_hand_example():
    # members 0, 1, 2 and truth 0.5: mean |x - y| = 5/6, pair term 8 / (2·3·2) = 2/3
    members = np.array([0.0, 1.0, 2.0]).reshape(3, 1, 1, 1)
    ens, truth = ensemble_field(members), grid_field(np.full((1, 1, 1), 0.5))
    expected = float(sr.crps_ensemble(0.5, np.array([0.0, 1.0, 2.0]), estimator="fair"))
    assert float(fair_crps(ens, truth)) == pytest.approx(1.0 / 6.0)
    assert float(fair_crps(ens, truth)) == pytest.approx(expected)


def test_gaussian_crps_standard_normal_at_zero():
    one = grid_field(np.ones((1, 1, 1)))
    assert float(gaussian_crps(0 * one, one, 0 * one)) == pytest.approx(0.2336949772551091)


def calibrated_and_narrow(seed, shape, members, narrow):
    """Standard-normal truth, a calibrated ensemble and one ``narrow`` times as wide."""
    rng = np.random.default_rng(seed)
    truth = grid_field(rng.standard_normal(shape))
    calibrated = ensemble_field(rng.standard_normal((members, *shape)))
    return truth, calibrated, ensemble_field(narrow * rng.standard_normal((members, *shape)))


def test_spread_skill_one_when_calibrated_half_when_too_narrow():
    truth, calibrated, narrow = calibrated_and_narrow(2, (1, 20, 20), 50, 0.5)
    assert float(spread_skill(calibrated, truth)) == pytest.approx(1.0, abs=0.1)
    assert float(spread_skill(narrow, truth)) == pytest.approx(0.5, abs=0.06)


def test_spread_skill_interval_holds_the_ratio_and_separates_narrow_from_calibrated():
    truth, calibrated, narrow = calibrated_and_narrow(4, (24, 10, 12), 16, 0.6)
    value, low, high = spread_skill_interval(calibrated, truth, block=4, n_boot=500)
    # on all times it is spread_skill itself
    assert value == pytest.approx(float(spread_skill(calibrated, truth)), rel=1e-12)
    assert low < 1.0 < high and high - low < 0.2
    value, low, high = spread_skill_interval(narrow, truth, block=4, n_boot=500)
    assert value == pytest.approx(float(spread_skill(narrow, truth)), rel=1e-12)
    assert low <= value <= high < 0.8
    with pytest.raises(ValueError, match="need the dim 'step'"):
        spread_skill_interval(narrow, truth, dim="step")


def test_block_bootstrap_gives_no_interval_with_fewer_than_four_blocks():
    from hdm.metrics.probabilistic import block_bootstrap

    x = np.random.default_rng(1).normal(size=12)
    # one block of all times (or three): no interval, never a point
    value, low, high = block_bootstrap(np.mean, x, block=12, n_boot=50)
    assert value == pytest.approx(x.mean()) and low is None and high is None
    assert block_bootstrap(np.mean, x, block=4, n_boot=50)[1:] == (None, None)
    value, low, high = block_bootstrap(np.mean, x, block=3, n_boot=400)  # 4 blocks
    assert low < value < high
    with pytest.raises(ValueError, match="at least 2 times"):
        block_bootstrap(np.mean, x[:1])
    with pytest.raises(ValueError, match=r"one shape \(T,\)"):
        block_bootstrap(lambda a, b: 0.0, x, x[:5])


def test_rank_histogram_of_calibrated_ensemble_is_flat():
    rng = np.random.default_rng(3)
    shape = (2, 20, 25)
    truth = grid_field(rng.standard_normal(shape))
    ens = ensemble_field(rng.standard_normal((9, *shape)))
    counts = rank_histogram(ens, truth, seed=0)
    assert counts.dims == ("rank",) and counts.shape == (10,)
    assert int(counts.sum()) == truth.size
    assert stats.chisquare(counts.values).pvalue > 0.01


def test_rank_histogram_breaks_ties_at_random_and_reproducibly():
    truth = grid_field(np.zeros((1, 20, 20)))
    ens = xr.concat([truth] * 3, dim="member").transpose("member", ...)
    counts = rank_histogram(ens, truth, seed=5)
    assert np.array_equal(counts.values, rank_histogram(ens, truth, seed=5).values)
    assert int(counts.min()) > 60  # 400 ties spread over 4 bins


def test_coverage_of_calibrated_ensemble_matches_level():
    rng = np.random.default_rng(4)
    shape = (2, 20, 25)
    truth = grid_field(rng.standard_normal(shape))
    ens = ensemble_field(rng.standard_normal((19, *shape)))
    assert float(coverage(ens, truth, 0.9)) == pytest.approx(0.9, abs=0.03)


def test_gaussian_coverage_of_calibrated_forecast_matches_level():
    rng = np.random.default_rng(5)
    truth = grid_field(rng.standard_normal((4, 20, 25)))
    zero, one = 0 * truth, 0 * truth + 1
    assert float(gaussian_coverage(zero, one, truth, 0.5)) == pytest.approx(0.5, abs=0.03)


def test_scores_on_stations_are_unweighted_means():
    truth = xr.DataArray([1.0, 2.0, 3.0], dims="station")
    assert float(rmse(truth + 0.5, truth)) == pytest.approx(0.5)
    ens = xr.concat([truth, truth], dim="member")
    assert float(fair_crps(ens, truth)) == pytest.approx(0.0)
    assert float(gaussian_crps(truth, 0 * truth, truth + 1)) == pytest.approx(1.0)


def test_dim_keeps_the_other_dims_and_equals_the_scores_one_time_at_a_time():
    rng = np.random.default_rng(8)
    truth = grid_field(rng.standard_normal((3, 6, 7)))
    ens = ensemble_field(rng.standard_normal((5, 3, 6, 7)))
    mean = ens.mean("member")
    per_time = rmse(mean, truth, dim=["lat", "lon"])
    assert per_time.dims == ("time",) and np.isfinite(per_time).all()
    for i in range(3):
        assert float(per_time[i]) == pytest.approx(float(rmse(mean[i], truth[i])))
    crps = fair_crps(ens, truth, dim=["lat", "lon"])
    assert float(crps[1]) == pytest.approx(float(fair_crps(ens[:, 1], truth[1])))
    counts = rank_histogram(ens, truth, dim=["lat", "lon"])
    assert counts.dims == ("time", "rank") and (counts.sum("rank") == 6 * 7).all()
    with pytest.raises(ValueError, match=r"cannot reduce over \['level'\]"):
        rmse(mean, truth, dim="level")


def test_explicit_weights_replace_the_area_weights():
    truth = grid_field(np.zeros((1, 2, 3)), lat=np.array([0.0, 60.0]))
    pred = truth.copy()
    pred[0, 1, :] = 1.0  # error only at 60°N
    equal = xr.ones_like(truth.lat)
    assert float(rmse(pred, truth, weights=equal)) == pytest.approx(math.sqrt(0.5))
    area = math.sqrt(0.5 / 1.5)  # cos 60° = 0.5
    assert float(rmse(pred, truth)) == pytest.approx(area)


def test_coarse_consistency_of_a_field_with_its_own_coarse_graining():
    rng = np.random.default_rng(6)
    fine = grid_field(rng.standard_normal((2, 8, 12)), lat=np.linspace(40, 47, 8))
    coarse = coarse_grain(fine, 4)
    assert float(coarse_consistency(fine, coarse, 4, noise_std=0.1)) == pytest.approx(0.0, abs=1e-9)
    assert float(coarse_consistency(fine, coarse + 0.2, 4, noise_std=0.1)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="does not match the coarse-grained"):
        coarse_consistency(fine, coarse, 2, noise_std=0.1)


def test_power_spectrum_of_sinusoid_peaks_at_its_wavenumber():
    lat = np.arange(32) * 0.5
    lon = np.arange(64) * 0.5  # 32° wide: bins of 1/32 cycles/degree
    k0 = 8.0 / 32.0
    wave = np.broadcast_to(np.sin(2 * np.pi * k0 * lon), (32, 64))
    spec = power_spectrum(grid_field(wave[None], lat=lat, lon=lon))
    assert spec.wavenumber.values[np.argmax(spec.values)] == pytest.approx(k0)


def test_power_spectrum_bins_shared_at_twice_the_resolution():
    def on_grid(n):
        step = 16.0 / n
        lat = lon = (np.arange(n) + 0.5) * step
        return grid_field(np.sin(2 * np.pi * lat / 8.0)[:, None] + 0 * lon, lat=lat, lon=lon)

    coarse, fine = power_spectrum(on_grid(16)), power_spectrum(on_grid(32))
    k = coarse.wavenumber.values
    np.testing.assert_allclose(fine.wavenumber.values[: k.size], k)
    assert float(fine.sel(wavenumber=1 / 8)) == pytest.approx(
        float(coarse.sel(wavenumber=1 / 8)), rel=0.05
    )


def test_spectrum_ratio_of_field_with_itself_is_one():
    field = grid_field(np.random.default_rng(7).standard_normal((2, 16, 20)))
    assert float(spectrum_ratio(field, field)) == pytest.approx(1.0)


def test_paired_block_bootstrap_of_a_constant_shift_is_exact():
    from hdm.metrics.probabilistic import paired_block_bootstrap

    b = np.random.default_rng(0).gamma(2.0, size=28)
    d, lo, hi = paired_block_bootstrap(b + 0.3, b, block=4, n_boot=200)
    assert d == pytest.approx(0.3) and lo == pytest.approx(0.3) and hi == pytest.approx(0.3)
    d, lo, hi = paired_block_bootstrap(b, np.roll(b, 5), block=4, n_boot=500, seed=1)
    assert d == pytest.approx(0.0, abs=1e-12) and lo < 0 < hi
    with pytest.raises(ValueError, match="per-time score arrays"):
        paired_block_bootstrap(b, b[:5])


def test_laplacian_ratio_is_one_for_the_truth_and_sees_speckle_only_where_it_is():
    """Members equal to the truth give 1; white noise added over the 'sea' half raises
    the sea ratio by the noise's Laplacian power (20 σ² per point) and leaves land at 1."""
    from hdm.metrics.probabilistic import laplacian, laplacian_ratio

    lat, lon = np.arange(40.0, 50.0, 0.25), np.arange(0.0, 10.0, 0.25)
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    smooth = np.sin(yy / 2.0) + np.cos(xx / 3.0)
    truth = xr.DataArray(smooth[None], dims=("time", "lat", "lon"),
                         coords={"time": [0], "lat": lat, "lon": lon})  # fmt: skip
    same = truth.expand_dims(member=3)
    assert float(laplacian_ratio(same, truth)) == pytest.approx(1.0)
    sea = xr.DataArray(xx < 5.0, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    rng = np.random.default_rng(0)
    noise = 0.01 * rng.standard_normal((3, 1, lat.size, lon.size)) * sea.values
    speckled = same + noise
    truth_power = float((laplacian(truth) ** 2).where(sea).mean())
    expected = 1 + 20 * 0.01**2 / truth_power
    assert float(laplacian_ratio(speckled, truth, sea)) == pytest.approx(expected, rel=0.15)
    land = xr.DataArray(xx > 5.5, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    assert float(laplacian_ratio(speckled, truth, land)) == pytest.approx(1.0, abs=1e-9)


def test_spread_skill_by_band_is_the_deviation_scale_in_every_band():
    """Members mean + c·ε_i and truth mean + ε_0 with ε white: every band's ratio is c
    (within sampling error), and a smooth deviation added to the members only widens
    the low-wavenumber bands; the error shares sum to 1."""
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(40, 56, 33), np.linspace(-10, 14, 49)
    base = rng.normal(size=(24, 33, 49))
    noise = rng.normal(size=(17, 24, 33, 49))
    coords = {"lat": lat, "lon": lon}
    truth = xr.DataArray(base + noise[0], dims=("time", "lat", "lon"), coords=coords)

    def ensemble(deviations):
        return xr.DataArray(base + deviations, dims=("member", "time", "lat", "lon"), coords=coords)

    edges = [0, 0.35, 0.7, 1.1]  # the 0.5° grid's Nyquist: 1 cycle/degree
    for c in (0.5, 1.0):
        r = spread_skill_by_band(ensemble(c * noise[1:]), truth, edges)
        np.testing.assert_allclose(r.values, c, rtol=0.08)
        assert r.sizes["band"] == 3 and abs(float(r["error_share"].sum()) - 1) < 1e-9
    # a large-scale wave of random amplitude in each member: spread at k ≈ 1/16 only
    wave = np.sin(2 * np.pi * lon / 16.0)[None, None, None, :] * np.ones((1, 1, 33, 1))
    smooth = noise[1:] + 3 * rng.normal(size=(16, 24, 1, 1)) * wave
    r = spread_skill_by_band(ensemble(smooth), truth, edges)
    assert r.values[0] > 2 and abs(r.values[-1] - 1) < 0.08
    with pytest.raises(ValueError, match="increasing"):
        spread_skill_by_band(ensemble(noise[1:]), truth, [0, 0])
