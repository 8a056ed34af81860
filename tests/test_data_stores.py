"""Tests of hdm.data.stores: resumable zarr ensembles, CF netCDF, round trips."""

from __future__ import annotations

import json

import dask.array
import netCDF4
import numpy as np
import pytest
import xarray as xr
import zarr

import hdm
from hdm.data.schema import mock_fields
from hdm.data.stores import open_store, write_netcdf_cf, write_zarr_ensemble

PROVENANCE = {
    "checkpoint_hash": "sha256:0123abcd",
    "config": {"steps": 32, "guidance": "dps"},
    "seed": 7,
}


@pytest.fixture
def ens():
    ds = mock_fields(
        ["t2m", "q"], n_time=5, n_member=3, levels=[500, 850], level_variables=["q"], seed=2
    )
    ds = ds.assign_coords(valid_time=("time", ds.time.values))
    ds.attrs["institution"] = "hdm tests"
    return ds.chunk({"time": 1})


def count_to_zarr(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = xr.Dataset.to_zarr

    def spy(self, *args, **kwargs):
        if kwargs.get("region") is not None:
            calls.append(kwargs["region"]["time"].start)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", spy)
    return calls


def test_netcdf_zarr_netcdf_keeps_values_coords_attrs(ens, tmp_path):
    first = write_netcdf_cf(ens, tmp_path / "a.nc", PROVENANCE)
    a = open_store(first)
    write_zarr_ensemble(a, tmp_path / "b.zarr", {"time": 2, "member": 2})
    b = open_store(tmp_path / "b.zarr")
    c = open_store(write_netcdf_cf(b, tmp_path / "c.nc", PROVENANCE))
    for ds in (b, c):
        for name in ("t2m", "q"):
            np.testing.assert_array_equal(ds[name].values, ens[name].values)
            assert ds[name].attrs == a[name].attrs
        for coord in a.coords:
            xr.testing.assert_identical(ds[coord].load(), a[coord].load())
    # every write, zarr or netCDF, appends one line to the history and keeps the rest
    history_a, history_b, history_c = (ds.attrs.pop("history") for ds in (a, b, c))
    assert history_b.startswith(history_a + "\n") and history_b.endswith("(write_zarr_ensemble)")
    assert history_c.startswith(history_b + "\n") and history_c.count("\n") == 2
    assert b.attrs == a.attrs  # zarr keeps every attribute, no internal manifest shown
    assert c.attrs == a.attrs


def test_cf_and_provenance_attributes(ens, tmp_path):
    ens.attrs["actual_range"] = [1.5, 2.5]
    path = write_netcdf_cf(ens, tmp_path / "cf.nc", PROVENANCE)
    assert "history" not in ens.attrs and "hdm_seed" not in ens.attrs  # input untouched
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc.actual_range, [1.5, 2.5])
        assert nc.Conventions == "CF-1.8" and nc.hdm_version == hdm.__version__
        assert nc.hdm_checkpoint_hash == "sha256:0123abcd" and nc.hdm_seed == 7
        assert json.loads(nc.hdm_config) == PROVENANCE["config"]
        assert "write_netcdf_cf" in nc.history
        t2m = nc["t2m"]
        assert (t2m.units, t2m.standard_name) == ("K", "air_temperature")
        assert t2m.coordinates == "valid_time"
        assert nc["q"].standard_name == "specific_humidity"
        assert (nc["lat"].units, nc["lat"].standard_name, nc["lat"].axis) == (
            "degrees_north",
            "latitude",
            "Y",
        )
        assert nc["lon"].units == "degrees_east" and nc["level"].units == "hPa"
        assert nc["member"].standard_name == "realization"
        assert "since" in nc["time"].units
    with pytest.raises(ValueError, match=r"provenance lacks \['seed'\]"):
        write_netcdf_cf(ens, tmp_path / "x.nc", {"checkpoint_hash": "x", "config": {}})


def test_failed_netcdf_write_leaves_nothing(ens, tmp_path):
    def explode(block):
        raise RuntimeError("sampler crashed")

    bad = ens.assign(t2m=ens.t2m.copy(data=ens.t2m.data.map_blocks(explode, dtype="f4")))
    with pytest.raises(RuntimeError, match="sampler crashed"):
        write_netcdf_cf(bad, tmp_path / "out.nc", PROVENANCE)
    assert list(tmp_path.iterdir()) == []


def test_rerun_skips_completed_chunks(ens, tmp_path, monkeypatch):
    calls = count_to_zarr(monkeypatch)
    store = tmp_path / "e.zarr"
    first = write_zarr_ensemble(ens, store, {"time": 2, "member": 2})
    assert first.n_chunks == 3 and first.written == (0, 1, 2) and calls == [0, 2, 4]
    again = write_zarr_ensemble(ens, store, {"time": 2, "member": 2})
    assert again.written == () and again.skipped == (0, 1, 2) and len(calls) == 3
    arr = zarr.open_group(str(store), mode="r")["q"]
    assert arr.chunks == (2, 2, 2, 9, 16)


def test_interrupted_chunk_is_completed_with_identical_values(ens, tmp_path, monkeypatch):
    store = tmp_path / "e.zarr"
    write_zarr_ensemble(ens, store, {"time": 2})
    # simulate a crash while chunk 1 was being written: garbage in its region and no
    # manifest entry for it
    group = zarr.open_group(str(store), mode="r+")
    group["t2m"][:, 2:4] = -1.0
    manifest = json.loads(group.attrs["hdm_manifest"])
    manifest["complete"].remove(1)
    group.attrs["hdm_manifest"] = json.dumps(manifest)
    calls = count_to_zarr(monkeypatch)
    report = write_zarr_ensemble(ens, store, {"time": 2})
    assert report.written == (1,) and report.skipped == (0, 2) and calls == [2]
    back = open_store(store)
    np.testing.assert_array_equal(back.t2m.values, ens.t2m.values)
    np.testing.assert_array_equal(back.q.values, ens.q.values)


def test_a_crash_keeps_finished_chunks(ens, tmp_path):
    def explode_late(block, block_info=None):
        if block_info[None]["chunk-location"][1] == 3:  # time step 3: chunk 1 of k = 2
            raise RuntimeError("node lost")
        return block

    data = ens.t2m.data.map_blocks(explode_late, dtype=ens.t2m.dtype)
    store = tmp_path / "e.zarr"
    with pytest.raises(RuntimeError, match="node lost"):
        write_zarr_ensemble(ens.assign(t2m=ens.t2m.copy(data=data)), store, {"time": 2})
    report = write_zarr_ensemble(ens, store, {"time": 2})
    assert report.skipped == (0,) and report.written == (1, 2)
    np.testing.assert_array_equal(open_store(store).t2m.values, ens.t2m.values)


def test_store_of_another_dataset_is_refused(ens, tmp_path):
    store = tmp_path / "e.zarr"
    write_zarr_ensemble(ens, store)
    other = ens.isel(time=slice(0, 4))
    with pytest.raises(ValueError, match=r"e.zarr was written for a different dataset"):
        write_zarr_ensemble(other, store)
    assert write_zarr_ensemble(other, store, mode="w").written == (0, 1, 2, 3)
    assert open_store(store).sizes["time"] == 4
    with pytest.raises(ValueError, match="needs a 'time' dimension"):
        write_zarr_ensemble(ens.isel(time=0), tmp_path / "f.zarr")
    assert isinstance(open_store(store).t2m.data, dask.array.Array)
