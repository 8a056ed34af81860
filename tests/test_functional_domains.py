"""Tests of hdm.domains.functional: schema, splits, and one fact per dataset."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hdm.domains.functional import (
    DATASETS,
    SPLITS,
    curves,
    grf_covariance,
    load_functional,
    validate_curves,
)

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "functional"

SIZES = {
    "quadratic": (1000, 1000, 1000),
    "melbourne": (1855, 232, 232),
    "italy_power": (767, 165, 164),
    "grf": (2000, 500, 500),
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, xr.Dataset]:
    return {name: load_functional(name, seed=0) for name in DATASETS}


@pytest.mark.parametrize("name", DATASETS)
def test_schema_shapes_and_finiteness(loaded, name):
    ds = loaded[name]
    assert list(ds.data_vars) == ["y"]
    assert ds["y"].dims == ("sample", "x")
    assert ds["y"].dtype == np.float64
    assert np.isfinite(ds["y"].values).all()
    assert ds["x"].attrs["units"] == ds.attrs["x_units"]
    assert np.all(np.diff(ds["x"].values) > 0)
    for key in ("name", "description", "source", "x_units", "y_units"):
        assert isinstance(ds.attrs[key], str) and ds.attrs[key]
    assert ds.attrs["name"] == name
    assert set(np.unique(ds["split"].values)) == set(SPLITS)
    validate_curves(curves(ds, "train"))  # no error on clean data


@pytest.mark.parametrize("name", DATASETS)
def test_split_sizes_and_disjointness(loaded, name):
    ds = loaded[name]
    sizes = tuple(curves(ds, s).sizes["sample"] for s in SPLITS)
    assert sizes == SIZES[name]
    assert sizes[1] >= sizes[2]  # valid (null calibration) at least as large as test
    rows = {s: {r.tobytes() for r in curves(ds, s).values} for s in SPLITS}
    assert sum(len(r) for r in rows.values()) == ds.sizes["sample"]  # no duplicate curve
    assert not rows["train"] & rows["valid"]
    assert not rows["train"] & rows["test"]
    assert not rows["valid"] & rows["test"]


def test_quadratic_curves_are_exact_parabolas(loaded):
    da = loaded["quadratic"]["y"]
    x = da["x"].values
    h = x[1] - x[0]
    a = np.sign(np.diff(da.values, n=2, axis=1)[:, 0])
    # y = a x^2 / 50 + c: second differences are exactly 2 a h^2 / 50 everywhere
    np.testing.assert_allclose(
        np.diff(da.values, n=2, axis=1), (2 * a * h**2 / 50)[:, None] * np.ones((1, x.size - 2))
    )
    np.testing.assert_array_equal(a, loaded["quadratic"]["a"].values)
    offsets = da.values - a[:, None] * x**2 / 50
    np.testing.assert_allclose(offsets, offsets[:, :1] * np.ones_like(offsets), atol=1e-13)
    # a = +-1 equiprobable (5 standard errors) and eps ~ N(0, 1) before scaling by 1/50
    assert abs(np.mean(a > 0) - 0.5) < 5 * 0.5 / math.sqrt(a.size)
    assert abs(np.std(50 * offsets[:, 0]) - 1) < 0.1


def test_same_seed_same_data_other_seed_other_split(loaded):
    for name in ("quadratic", "melbourne"):
        assert load_functional(name, seed=0).identical(loaded[name])
    assert not np.array_equal(
        load_functional("quadratic", seed=1)["y"].values, loaded["quadratic"]["y"].values
    )
    other = load_functional("melbourne", seed=1)
    test0 = set(curves(loaded["melbourne"], "test")["source_row"].values)
    test1 = set(curves(other, "test")["source_row"].values)
    assert test0 != test1
    # the same curves, only split differently
    assert set(other["source_row"].values) == set(loaded["melbourne"]["source_row"].values)


def test_melbourne_has_complete_curves_only(loaded):
    ds = loaded["melbourne"]
    assert ds.sizes == {"sample": 2319, "x": 24}
    assert not np.isnan(ds["y"].values).any()
    y = ds["y"].values
    assert np.array_equal(y, np.round(y)) and y.min() == 0 and y.max() == 7243  # counts
    assert set(ds["label"].values) == {str(k) for k in range(1, 11)}
    np.testing.assert_array_equal(ds["x"].values, np.arange(24))
    assert ds["x"].attrs["units"] == "hour"


def test_italy_power_pools_both_files(loaded):
    ds = loaded["italy_power"]
    assert ds.sizes == {"sample": 1096, "x": 24}
    assert set(ds["label"].values) == {"1", "2"}
    y = ds["y"].values
    # z-normalised per day by the archive (sample standard deviation, ddof=1)
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(y.std(axis=1, ddof=1), 1, atol=1e-6)


def test_grf_sample_covariance_matches_truth(loaded):
    ds = loaded["grf"]
    assert ds.attrs["kernel"] == "squared_exponential" and ds.attrs["lengthscale"] == 0.1
    y = curves(ds, "train").values
    n = y.shape[0]
    c = grf_covariance(ds["x"].values, ds.attrs["lengthscale"])
    c_hat = y.T @ y / n  # known zero mean
    # For Gaussian y, Var[C^_ij] = (C_ij^2 + C_ii C_jj) / n, so
    # E||C^ - C||_F^2 = (||C||_F^2 + (tr C)^2) / n; allow three times its square root.
    rms = math.sqrt((np.sum(c**2) + np.trace(c) ** 2) / n) / np.linalg.norm(c)
    err = np.linalg.norm(c_hat - c) / np.linalg.norm(c)
    assert err < 3 * rms
    assert rms < 0.07  # the bound is informative: about 6% for n = 2000
    np.testing.assert_allclose(np.diag(c), 1.0)
    np.testing.assert_allclose(c, c.T)


def test_unknown_dataset_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown dataset 'quadratik'; did you mean 'quadratic'"):
        load_functional("quadratik")
    with pytest.raises(ValueError, match=r"Known: quadratic, melbourne, italy_power, grf"):
        load_functional("gridwatch")


def test_unknown_split(loaded):
    with pytest.raises(ValueError, match=r"unknown split 'validation'; did you mean 'valid'"):
        curves(loaded["grf"], "validation")


def test_missing_file_names_path_and_provenance(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"MelbournePedestrian_TEST\.arff.*PROVENANCE"):
        load_functional("melbourne", data_dir=tmp_path)
    monkeypatch.setenv("HDM_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"functional.ItalyPowerDemand_TRAIN\.ts"):
        load_functional("italy_power")
    # the environment variable points at the folder that contains functional/
    shutil.copytree(DATA_DIR, tmp_path / "functional")
    assert load_functional("italy_power").sizes["sample"] == 1096


def _corrupt(src: Path, dst_dir: Path, lineno: int, edit) -> None:
    lines = src.read_text().splitlines(keepends=True)
    lines[lineno - 1] = edit(lines[lineno - 1])
    (dst_dir / src.name).write_text("".join(lines))


def test_malformed_lines_name_file_and_line(tmp_path):
    for f in DATA_DIR.glob("*.ts"):
        shutil.copy(f, tmp_path)
    _corrupt(DATA_DIR / "ItalyPowerDemand_TEST.ts", tmp_path, 20, lambda s: "abc," + s)
    with pytest.raises(ValueError, match=r"ItalyPowerDemand_TEST\.ts, line 20: 'abc'"):
        load_functional("italy_power", data_dir=tmp_path)
    _corrupt(
        DATA_DIR / "MelbournePedestrian_TEST.arff", tmp_path, 90, lambda s: s[s.index(",") + 1 :]
    )
    with pytest.raises(ValueError, match=r"MelbournePedestrian_TEST\.arff, line 90: expected 25"):
        load_functional("melbourne", data_dir=tmp_path)


def test_validate_curves_names_first_bad_sample(loaded):
    da = curves(loaded["melbourne"], "train").copy(deep=True)
    da[17, 5] = np.nan
    da[40, 2] = np.inf
    label = da["label"].values[17]
    with pytest.raises(
        ValueError,
        match=rf"training data contain non-finite values in sample 17 \(label '{label}'\) "
        r"at x = 5\.0 .*2 of 1855 samples",
    ):
        validate_curves(da)
    with pytest.raises(ValueError, match=r"must have dims \('sample', 'x'\)"):
        validate_curves(da.rename(x="t"))
