"""Tests of hdm.data.normalization.FieldNormaliser (per variable / per level, dask)."""

from __future__ import annotations

import json

import dask.array
import numpy as np
import pytest
import torch
from dask.callbacks import Callback

from hdm.data.accessor import channel_layout, to_tensor
from hdm.data.normalization import (
    FieldNormaliser,
    ScalarNormaliser,
    normaliser_from_dict,
)
from hdm.data.schema import mock_fields

TRAIN = slice("2020-01-01", "2020-01-02T00")  # the first 5 of 8 six-hourly steps


@pytest.fixture
def ds():
    return mock_fields(
        ["t2m", "q"], n_time=8, levels=[500, 850], level_variables=["q"], chunks={"time": 2}
    )


class CountComputes(Callback):
    def __init__(self):
        super().__init__()
        self.n = 0

    def _start(self, dsk):
        self.n += 1


def weighted_stats(values: np.ndarray, lat: np.ndarray, axes: tuple[int, ...]):
    w = np.broadcast_to(np.cos(np.deg2rad(lat))[:, None], values.shape[-2:])
    w = np.broadcast_to(w, values.shape)
    m = (w * values).sum(axes) / w.sum(axes)
    v = (w * values**2).sum(axes) / w.sum(axes) - m**2
    return m, np.sqrt(v)


def test_fit_is_area_weighted_per_level_in_one_compute(ds):
    counter = CountComputes()
    with counter:
        norm = FieldNormaliser.fit(ds, time=TRAIN)
    assert counter.n == 1  # every statistic of every variable in one dask.compute
    train = ds.sel(time=TRAIN).astype(np.float64)
    assert norm.time == ("2020-01-01T00:00:00", "2020-01-02T00:00:00")
    m, s = weighted_stats(train.t2m.values, ds.lat.values, (0, 1, 2))
    t2m = norm.stats("t2m")
    assert t2m.levels is None and t2m.units == "K"
    np.testing.assert_allclose(t2m.mean, [m], rtol=1e-12)
    np.testing.assert_allclose(t2m.std, [s], rtol=1e-9)
    mq, sq = weighted_stats(train.q.values, ds.lat.values, (0, 2, 3))
    q = norm.stats("q")
    assert q.levels == (500.0, 850.0) and len(q.mean) == 2
    np.testing.assert_allclose(q.mean, mq, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.std, sq, rtol=1e-9)
    shared = FieldNormaliser.fit(ds, "q", time=TRAIN, per_level=False)
    assert len(shared.stats("q").mean) == 1 and shared.channels == (("q", 500.0), ("q", 850.0))


def test_fit_uses_only_the_training_slice(ds):
    norm = FieldNormaliser.fit(ds, time=TRAIN)
    changed = ds.copy()
    later = changed.time > np.datetime64("2020-01-02T00")
    changed["t2m"] = changed.t2m.where(~later, 1e6)
    changed["q"] = changed.q.where(~later, -5.0)
    assert FieldNormaliser.fit(changed, time=TRAIN) == norm
    assert FieldNormaliser.fit(changed) != norm


def test_normalise_dataset_lazily_and_back(ds):
    norm = FieldNormaliser.fit(ds, time=TRAIN)
    z = norm.normalise(ds)
    assert isinstance(z.t2m.data, dask.array.Array) and z.t2m.dtype == np.float32
    assert z.t2m.attrs["units"] == "1" and ds.t2m.attrs["units"] == "K"
    zt = z.sel(time=TRAIN).astype(np.float64)
    for name, axes in (("t2m", (0, 1, 2)), ("q", (0, 2, 3))):
        m, s = weighted_stats(zt[name].values, ds.lat.values, axes)
        np.testing.assert_allclose(m, 0.0, atol=1e-5)
        np.testing.assert_allclose(s, 1.0, rtol=1e-5)
    back = norm.denormalise(z)
    assert back.t2m.attrs["units"] == "K"
    np.testing.assert_allclose(back.t2m.values, ds.t2m.values, rtol=1e-6)
    np.testing.assert_allclose(back.q.values, ds.q.values, rtol=1e-5, atol=1e-5)


def test_tensors_match_the_dataset_path(ds):
    norm = FieldNormaliser.fit(ds, time=TRAIN)
    layout = channel_layout(ds)
    assert layout == (("t2m", None), ("q", 500.0), ("q", 850.0)) == norm.channels
    x = to_tensor(ds)  # (time, C, lat, lon), float32
    z = norm.normalise(x)
    assert z.dtype == torch.float32 and z.shape == x.shape and torch.isfinite(z).all()
    expected = to_tensor(norm.normalise(ds))
    np.testing.assert_allclose(z.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.denormalise(z).numpy(), x.numpy(), rtol=1e-6, atol=1e-4)
    # a subset of channels, channels last
    sub = norm.normalise(x[:, 1:].movedim(1, -1), layout=layout[1:], channel_dim=-1)
    np.testing.assert_array_equal(sub.movedim(-1, 1).numpy(), z[:, 1:].numpy())
    with pytest.raises(ValueError, match="has 2 channels, the layout has 3"):
        norm.normalise(x[:, :2])


def test_dict_round_trip_through_json(ds):
    norm = FieldNormaliser.fit(ds, time=TRAIN)
    d = json.loads(json.dumps(norm.to_dict()))
    assert d["kind"] == "field"
    assert FieldNormaliser.from_dict(d) == norm == normaliser_from_dict(d)
    scalar = ScalarNormaliser(1.0, 2.0)
    assert normaliser_from_dict(scalar.to_dict()) == scalar


def test_errors(ds):
    with pytest.raises(ValueError, match=r"training time selection .* is empty"):
        FieldNormaliser.fit(ds, time=slice("2021-01-01", "2021-02-01"))
    with pytest.raises(KeyError, match=r"\['z'\] not in the dataset; present: \['t2m', 'q'\]"):
        FieldNormaliser.fit(ds, ["z"])
    flat = ds.assign(t2m=ds.t2m * 0 + 280.0)
    with pytest.raises(ValueError, match="cannot fit 't2m': std is 0"):
        FieldNormaliser.fit(flat, "t2m")
    with pytest.raises(ValueError, match="wrong kind 'scalar'"):
        FieldNormaliser.from_dict({"kind": "scalar", "mean": 0.0, "std": 1.0})
    with pytest.raises(ValueError, match="unknown normaliser kind 'pca'"):
        normaliser_from_dict({"kind": "pca"})
