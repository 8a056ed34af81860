"""Tests of hdm.data.normalization.ScalarNormaliser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.data.normalization import ScalarNormaliser


@pytest.fixture
def values() -> np.ndarray:
    return np.random.default_rng(0).normal(3.0, 2.0, size=(20, 8))


def test_fit_gives_unit_scale_and_round_trips(values):
    norm = ScalarNormaliser.fit(values)
    assert norm.mean == pytest.approx(values.mean()) and norm.std == pytest.approx(values.std())
    z = norm.normalise(values)
    assert z.shape == values.shape and np.isfinite(z).all()
    assert z.mean() == pytest.approx(0, abs=1e-12) and z.std() == pytest.approx(1)
    np.testing.assert_allclose(norm.denormalise(z), values, rtol=1e-15, atol=1e-14)


def test_torch_and_xarray_alike(values):
    norm = ScalarNormaliser.fit(values)
    t = torch.from_numpy(values)
    np.testing.assert_array_equal(norm.normalise(t).numpy(), norm.normalise(values))
    assert norm.normalise(t.float()).dtype == torch.float32
    da = xr.DataArray(values, dims=("sample", "x"), attrs={"units": "K"})
    z = norm.normalise(da)
    np.testing.assert_array_equal(z.values, norm.normalise(values))
    assert z.attrs["units"] == "1" and da.attrs["units"] == "K"  # input left untouched
    back = norm.denormalise(z)
    assert "units" not in back.attrs
    np.testing.assert_allclose(back.values, values, rtol=1e-15, atol=1e-14)


def test_dict_round_trip_is_exact_through_json(values):
    norm = ScalarNormaliser.fit(values)
    d = json.loads(json.dumps(norm.to_dict()))
    assert d["kind"] == "scalar"
    assert ScalarNormaliser.from_dict(d) == norm


def test_fit_uses_only_the_data_given(values):
    train, test = values[:10], values[10:] + 100.0
    norm = ScalarNormaliser.fit(train)
    assert norm == ScalarNormaliser.fit(train.copy())
    assert norm.mean == pytest.approx(train.mean()) and norm.mean < 10
    with_bad = np.concatenate([train.ravel(), [np.nan, np.inf, -np.inf]])
    assert ScalarNormaliser.fit(with_bad) == ScalarNormaliser.fit(train.ravel())
    assert ScalarNormaliser.fit(np.concatenate([train, test])) != norm


def test_errors():
    with pytest.raises(ValueError, match="the data is empty"):
        ScalarNormaliser.fit(np.array([]))
    with pytest.raises(ValueError, match="no finite value"):
        ScalarNormaliser.fit(np.array([np.nan, np.inf]))
    with pytest.raises(ValueError, match="std is 0"):
        ScalarNormaliser.fit(np.full(5, 2.0))
    with pytest.raises(ValueError, match="wrong kind 'per_variable'"):
        ScalarNormaliser.from_dict({"kind": "per_variable", "mean": 0.0, "std": 1.0})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['std'\]"):
        ScalarNormaliser.from_dict({"kind": "scalar", "mean": 0.0})
