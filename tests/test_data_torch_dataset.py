"""Tests of hdm.data.torch_dataset.FieldDataset: streaming, workers, patches."""

from __future__ import annotations

import functools
import pickle

import dask.array
import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from hdm.data.normalization import FieldNormaliser
from hdm.data.open import open_fields
from hdm.data.schema import mock_fields
from hdm.data.torch_dataset import FieldDataset


@pytest.fixture
def ds():
    return mock_fields(
        ["t2m", "q"], n_time=6, levels=[500, 850], level_variables=["q"], chunks={"time": 1}
    )


def test_samples_are_normalised_channels(ds):
    norm = FieldNormaliser.fit(ds, time=slice("2020-01-01", "2020-01-01T12"))
    fd = FieldDataset(ds, normaliser=norm)
    assert len(fd) == 6 and fd.layout == norm.channels
    x = fd[4]
    assert x.shape == (3, 9, 16) and x.dtype == torch.float32 and torch.isfinite(x).all()
    want = norm.normalise(ds.hdm.to_tensor()[4:5].double())[0].float()
    np.testing.assert_allclose(x.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    batch = fd.__getitems__([5, 1, 1])
    np.testing.assert_array_equal(batch[0].numpy(), fd[5].numpy())
    np.testing.assert_array_equal(batch[2].numpy(), fd[1].numpy())
    np.testing.assert_array_equal(fd[-1].numpy(), fd[5].numpy())
    with pytest.raises(IndexError, match="index 6 out of range for 6 samples"):
        fd[6]


def test_getitem_reads_only_its_time_step():
    touched: list[int] = []

    def source(block, block_info=None):
        touched.append(block_info[None]["chunk-location"][0])
        return block

    base = dask.array.ones((8, 4, 5), chunks=(1, 4, 5))
    data = base.map_blocks(source, dtype=base.dtype)
    ds = xr.Dataset(
        {"a": (("time", "lat", "lon"), data)},
        coords={"time": np.arange(8), "lat": np.linspace(0, 3, 4), "lon": np.linspace(0, 4, 5)},
    )
    fd = FieldDataset(ds)
    touched.clear()
    x = fd[5]
    assert x.shape == (1, 4, 5) and touched == [5]
    touched.clear()
    fd.__getitems__([2, 3])
    assert sorted(touched) == [2, 3]


def test_dataloader_workers_match_single_process(ds, tmp_path):
    path = tmp_path / "f.nc"
    ds.to_netcdf(path)
    opener = functools.partial(open_fields, path, chunks={"time": 1})
    norm = FieldNormaliser.fit(opener())
    for source in (opener, opener()):
        fd = FieldDataset(source, normaliser=norm, patch=(4, 6), seed=3)
        single = list(DataLoader(fd, batch_size=4, num_workers=0))
        multi = list(DataLoader(fd, batch_size=4, num_workers=2))
        assert [b.shape for b in single] == [(4, 3, 4, 6), (2, 3, 4, 6)]
        assert all(torch.equal(a, b) for a, b in zip(single, multi, strict=True))


def test_patches_are_reproducible_slices(ds):
    full = FieldDataset(ds)
    fd = FieldDataset(ds, patch=(5, 7), seed=1)
    r, c = fd.patch_offset(2)
    assert 0 <= r <= 4 and 0 <= c <= 9
    np.testing.assert_array_equal(fd[2].numpy(), full[2][:, r : r + 5, c : c + 7].numpy())
    assert torch.equal(fd[2], FieldDataset(ds, patch=(5, 7), seed=1)[2])
    offsets = {fd.patch_offset(i) for i in range(6)}
    fd.set_epoch(1)
    assert {fd.patch_offset(i) for i in range(6)} != offsets
    clone = pickle.loads(pickle.dumps(fd))
    assert torch.equal(clone[3], fd[3])
    with pytest.raises(
        ValueError, match=r"patch \(10, 4\) must fit in the grid \(lat, lon\) = \(9, 16\)"
    ):
        FieldDataset(ds, patch=(10, 4))
