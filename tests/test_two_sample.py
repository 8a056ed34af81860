"""Tests for hdm.metrics.two_sample: each asserts one property on tiny synthetic curves."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from hdm.metrics import two_sample
from hdm.metrics.two_sample import (
    cov_rel_hs,
    functional_report,
    hdm_power,
    mean_rel_l2,
    mmd2,
    mmd2_bootstrap,
    rigorous_power,
)

X_GRID = np.linspace(-10.0, 10.0, 100)


def quadratic(n, rng, collapse=False):
    """Quadratic curves (a x² + eps) / 50, a = ±1 (or +1 only when collapsed)."""
    a = np.ones(n) if collapse else rng.choice([-1.0, 1.0], size=n)
    eps = rng.standard_normal(n)
    return (a[:, None] * X_GRID**2 + eps[:, None]) / 50.0


def test_mmd2_hand_computed_3v3():
    # 1-point curves; pooled distances 1 (x5), 2 (x4), 3 (x3), 4 (x2), 5: median 2
    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([[3.0], [4.0], [5.0]])

    def k(d):
        return math.exp(-(d**2) / (2 * 2.0**2))

    within = (2 * k(1) + k(2)) * 2 / 6
    cross = (k(1) + 2 * k(2) + 3 * k(3) + 2 * k(4) + k(5)) / 9
    assert mmd2(x, y) == pytest.approx(2 * within - 2 * cross, rel=1e-12)


def test_mmd2_unbiased_zero_mean_under_null():
    rng = np.random.default_rng(0)
    vals = [mmd2(rng.standard_normal((8, 5)), rng.standard_normal((12, 5))) for _ in range(300)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / math.sqrt(len(vals))


def test_rigorous_test_is_calibrated_under_null():
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal((400, 6)) for _ in range(3))
    res = rigorous_power(a, b, c, n=20, n_subsets=100, n_permutations=200, seed=3)
    upper = stats.binom.ppf(0.995, 100, 0.05)
    assert res.rejections <= upper and res.rejections_null <= upper
    assert res.power_ci[0] <= 5.0 <= res.power_ci[1]


def test_rigorous_power_full_for_clearly_different():
    rng = np.random.default_rng(2)
    gen, ref, held = quadratic(200, rng, True), quadratic(200, rng), quadratic(200, rng)
    res = rigorous_power(gen, ref, held, n=30, n_subsets=20, n_permutations=200, seed=0)
    assert res.power == 100.0
    assert res.power_null <= 20.0


def test_rigorous_same_pool_keeps_sides_disjoint(monkeypatch):
    # reference and null from one pool: every pooled test set must hold distinct curves
    pooled_sizes = []
    original = two_sample._kernel

    def recording_kernel(z):
        pooled_sizes.append((len(np.unique(z, axis=0)), len(z)))
        return original(z)

    monkeypatch.setattr(two_sample, "_kernel", recording_kernel)
    rng = np.random.default_rng(3)
    gen, ref = rng.standard_normal((300, 4)), rng.standard_normal((120, 4))
    res = rigorous_power(gen, ref, ref, n_subsets=5, n_permutations=50)
    assert res.same_pool and res.n_per_side == 50  # 120 // 2 = 60 available, half < 50
    assert len(pooled_sizes) == 10 and all(u == t == 100 for u, t in pooled_sizes)
    with pytest.raises(ValueError, match="between 10 and 60"):
        rigorous_power(gen, ref, None, n=61, n_subsets=5, n_permutations=50)


def test_hdm_power_mode_collapse_high_and_seeded():
    rng = np.random.default_rng(4)
    ref, gen = quadratic(1000, rng), quadratic(1000, rng, collapse=True)
    res = hdm_power(gen, ref, n_repeats=4, n_permutations=300, seed=7)
    assert 55.0 <= res.power <= 95.0
    assert (res.n_chunks, res.m, res.n) == (100, 10, 10)
    assert hdm_power(gen, ref, n_repeats=4, n_permutations=300, seed=7) == res


def test_hdm_power_near_alpha_for_perfect_generator():
    rng = np.random.default_rng(5)
    res = hdm_power(quadratic(500, rng), quadratic(500, rng), n_repeats=3, n_permutations=300)
    assert res.power <= 12.0


def test_moment_errors_zero_for_identical_sets():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((30, 12))
    assert mean_rel_l2(a, a.copy()).absolute == 0.0
    assert cov_rel_hs(a, a.copy()).relative == 0.0


def test_cov_rel_hs_scaling_closed_form():
    rng = np.random.default_rng(7)
    b = rng.standard_normal((40, 10))
    for c in (0.5, 2.0):
        assert cov_rel_hs(c * b, b).relative == pytest.approx(abs(c**2 - 1), rel=1e-10)
    # more points than curves takes the Gram-matrix path: same closed form
    wide = rng.standard_normal((8, 50))
    assert cov_rel_hs(3.0 * wide, wide).relative == pytest.approx(8.0, rel=1e-8)


def test_mean_rel_l2_shift_closed_form():
    rng = np.random.default_rng(8)
    b = rng.standard_normal((50, 16))
    res = mean_rel_l2(b + 0.3, b)
    assert res.absolute == pytest.approx(0.3, rel=1e-12)
    assert res.relative == pytest.approx(0.3 / math.sqrt(b.var(axis=0, ddof=1).mean()))


def test_uniform_weights_equal_no_weights():
    rng = np.random.default_rng(9)
    a, b, c = (rng.standard_normal((60, 8)) for _ in range(3))
    w = np.full(8, 2.5)  # uniform, summing to a "domain length" of 20
    kw = dict(n=20, n_subsets=10, n_permutations=50, seed=1)
    assert rigorous_power(a, b, c, weights=w, **kw) == rigorous_power(a, b, c, **kw)
    assert mmd2(a, b, weights=w) == pytest.approx(mmd2(a, b), rel=1e-12)
    assert cov_rel_hs(a, b, w).relative == pytest.approx(cov_rel_hs(a, b).relative)
    assert mean_rel_l2(a, b, w).relative == pytest.approx(mean_rel_l2(a, b).relative)


def test_xarray_input_transposed_dims():
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((20, 5)), rng.standard_normal((25, 5))
    da = xr.DataArray(a.T, dims=("x", "sample"))
    assert mmd2(da, b) == mmd2(a, b)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((40, 100))
    with pytest.raises(ValueError, match="generated curves have 100 points but reference"):
        hdm_power(a, rng.standard_normal((40, 24)))
    bad = a.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        rigorous_power(bad, a, a[:20])
    with pytest.raises(ValueError, match=r"at least 10 curves per side.*allow only 5"):
        rigorous_power(a[:5], a, a[:30])
    with pytest.raises(ValueError, match="at least 10 generated curves, got 9"):
        hdm_power(a[:9], a)


def test_mmd2_bootstrap_interval_and_report_json():
    rng = np.random.default_rng(12)
    gen, test, held = quadratic(60, rng, True), quadratic(60, rng), quadratic(60, rng)
    value, lo, hi = mmd2_bootstrap(gen, test, n_boot=50)
    assert lo <= value <= hi and lo > 0.0
    rep = functional_report(gen, test, held, quick=True)
    json.dumps(rep)
    assert rep["mmd2_floor"] < rep["mmd2"] and rep["power_rigorous"] > rep["power_null"]
    assert rep["n_per_side"] == 50


def test_report_with_a_small_test_split_limits_hdm_chunks():
    # ItalyPowerDemand has 164 test curves: 1,000 generated would give 1 reference curve
    # per HDM chunk; the report uses the first 5·164 = 820 (82 tests of 10 vs 2).
    rng = np.random.default_rng(0)
    out = functional_report(
        rng.normal(size=(1000, 24)),
        rng.normal(size=(164, 24)),
        rng.normal(size=(165, 24)),
        quick=True,
    )
    assert out["n_generated_hdm"] == 820 and out["n_generated"] == 1000
    assert 0.0 <= out["power_hdm"] <= 100.0
