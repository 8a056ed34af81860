"""CF outputs: every store hdm writes (``write_output`` as zarr and netCDF, a batch
store) carries the same CF-1.8 attributes, read back with cf_xarray, and opens with
``xr.open_zarr`` without a warning.

(The CF checker, ``cfchecker``, is not run: it needs the UDUNITS-2 C library, which pip
cannot install, and downloads the standard-name table unless given a copy.)
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import cf_xarray  # noqa: F401  (the .cf accessor)
import numpy as np
import pytest
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.data.stores import cf_output, read_manifest
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.stations import simulate_observations, stations_by_id
from hdm.downscaling.core import downscale
from hdm.downscaling.output import attach_inputs, write_output
from hdm.pipelines.batch_store import MARKERS, read_markers
from hdm.pipelines.job import run_downscale

UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
STATIONS = "UKM00003808,UKM00003882,UKM00003354"

#: the methods of CF Appendix E (CF 1.8 to 1.12)
CF_METHODS = {
    "point", "sum", "anomaly_wrt", "maximum", "maximum_absolute_value", "median",
    "mid_range", "minimum", "minimum_absolute_value", "mean", "mean_absolute_value",
    "mean_of_upper_decile", "mode", "range", "root_mean_square", "standard_deviation",
    "sum_of_squares", "variance",
}  # fmt: skip
#: one "name: [name: ...] method [where|over|within ...] [(comment)]" entry (CF 7.3)
CELL_METHOD = re.compile(
    r"\s*(?P<names>(?:[A-Za-z_]\w*:\s+)+)(?P<method>[a-z_]+)"
    r"(?:\s+(?:where|over|within)\s+\w+)*(?:\s*\((?P<comment>[^()]*)\))?"
)


def parse_cell_methods(text: str) -> list[tuple[list[str], str]]:
    """The (names, method) entries of a CF ``cell_methods`` string; fails on anything
    that does not follow the grammar of CF 7.3."""
    entries, pos = [], 0
    while text[pos:].strip():
        match = CELL_METHOD.match(text, pos)
        assert match, f"cell_methods {text!r} does not parse at {text[pos:]!r}"
        names = [n.strip() for n in match["names"].split(":") if n.strip()]
        entries.append((names, match["method"]))
        pos = match.end()
    return entries


def _open(path: Path) -> xr.Dataset:
    """The store as a user opens it, warnings raised as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path) if path.suffix == ".zarr" else xr.open_dataset(path)
        return ds.load()


@pytest.fixture(scope="module")
def written(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """A downscaled UK ensemble with its GRIB-derived inputs, by ``write_output``."""
    times = slice("2019-03-25T00", "2019-03-25T01")
    truth = open_fields(UK_FILE, "t2m", time=times)["t2m"].load()
    stations = simulate_observations(truth, stations_by_id(STATIONS.split(",")), 0.5, 0)
    coarse = coarse_grain(truth, 4)
    assert coarse.attrs["GRIB_Nx"] == 49  # the stale attribute of the input
    # the tiny model is barely trained: its members are not weather (no run-away bound)
    ds = downscale(
        tiny_model, coarse=coarse, stations=stations, members=2, steps=2, runaway_bound=None
    )
    ds = attach_inputs(ds, {"t2m": coarse}, stations)
    out = tmp_path_factory.mktemp("cf")
    return {suffix: write_output(ds, out / f"ens{suffix}") for suffix in (".zarr", ".nc")}


#: the small batch run of the store fixture and of the resume test
BATCH_RUN = dict(
    times=("2019-03-25T00", "2019-03-25T01"),
    truth=str(UK_FILE),
    factor=4,
    simulate_stations=STATIONS,
    members=2,
    steps=2,
    runaway_bound="none",  # the tiny model is barely trained: its members are not weather
    chunk_size=1,
    torch_threads=1,
    plots=False,
    progress=False,
)


@pytest.fixture(scope="module")
def batch_store(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cf_batch") / "batch.zarr"
    summary = run_downscale(
        tiny_model.path,
        out,
        **BATCH_RUN,
    )
    assert summary["status"] == "done"
    return out


@pytest.fixture(params=[".zarr", ".nc", "batch"])
def store(request, written, batch_store) -> xr.Dataset:
    return _open(batch_store if request.param == "batch" else written[request.param])


def test_cf_xarray_finds_the_axes_of_the_ensemble(store):
    t2m = store["t2m"]
    assert t2m.cf.axes == {"T": ["time"], "X": ["lon"], "Y": ["lat"]}
    found = {key: t2m.cf[key].name for key in ("realization", "latitude", "longitude", "time")}
    assert found == {"realization": "member", "latitude": "lat", "longitude": "lon", "time": "time"}


def test_time_is_the_valid_time(store):
    attrs = store["time"].attrs
    assert (attrs["standard_name"], attrs["long_name"], attrs["axis"]) == (
        "time",
        "valid time",
        "T",
    )


def test_both_grids_have_contiguous_cell_edges(store):
    assert store.cf.bounds["latitude"] == ["coarse_lat_bounds", "lat_bounds"]
    assert store.cf.bounds["longitude"] == ["coarse_lon_bounds", "lon_bounds"]
    for axis in ("lat", "lon", "coarse_lat", "coarse_lon"):
        centres, edges = store[axis].values, store.cf.get_bounds(axis).values
        assert edges.shape == (centres.size, 2)
        np.testing.assert_allclose(edges[1:, 0], edges[:-1, 1])  # no gap, no overlap
        assert np.all((edges[:, 0] < centres) & (centres < edges[:, 1]))
    np.testing.assert_allclose(store["lat_bounds"].values[0], [49.875, 50.125])


def test_summaries_have_parseable_cf_cell_methods(store):
    methods = {n: parse_cell_methods(v.attrs["cell_methods"]) for n, v in store.data_vars.items()
               if "cell_methods" in v.attrs}  # fmt: skip
    assert methods == {
        "t2m_mean": [(["realization"], "mean")],
        "t2m_std": [(["realization"], "standard_deviation")],
        "t2m_coarse": [(["area"], "mean")],  # how the coarse values were observed
    }
    standard_names = set(store.cf.standard_names)
    for name, entries in methods.items():
        for names, method in entries:
            assert method in CF_METHODS
            # CF §7.3: a dimension, a standard name, or "area" (a horizontal area)
            assert all(n in store[name].dims or n in standard_names or n == "area" for n in names)
    assert store["quantile"].attrs["units"] == "1"  # CF has no quantile method: see summarise


def test_every_field_has_units_and_standard_name(store):
    for name in ("t2m", "t2m_mean", "t2m_std", "t2m_quantile", "t2m_coarse", "station_obs"):
        attrs = store[name].attrs
        assert (attrs["units"], attrs["standard_name"]) == ("K", "air_temperature"), name
        assert attrs["long_name"], name


def test_no_attribute_of_the_grib_input_survives(store):
    for obj in (store, *store.variables.values()):
        for key, value in obj.attrs.items():
            assert not key.startswith("GRIB_"), key
            assert value not in ("forecast_reference_time", "unknown"), (key, value)


def test_global_attributes_say_conventions_history_and_provenance(store):
    attrs = store.attrs
    assert attrs["Conventions"] == "CF-1.8" and attrs["source"].startswith("hdm ")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: ", attrs["history"])
    assert attrs["hdm_checkpoint_hash"] == attrs["checkpoint_hash"]
    assert attrs["hdm_seed"] == attrs["seed"] == 0


def test_zarr_and_netcdf_carry_the_same_attributes(written):
    zarr_ds, nc = _open(written[".zarr"]), _open(written[".nc"])
    assert sorted(zarr_ds.variables) == sorted(nc.variables)
    for name in nc.variables:
        assert zarr_ds[name].attrs == nc[name].attrs, name
    history = zarr_ds.attrs.pop("history"), nc.attrs.pop("history")
    assert [h.rsplit("(", 1)[1] for h in history] == ["write_zarr_ensemble)", "write_netcdf_cf)"]
    zarr_ds.attrs.pop("hdm_manifest")  # the zarr writer's own bookkeeping
    assert zarr_ds.attrs == nc.attrs
    assert json.loads(nc.attrs["hdm_config"])["guidance"] == nc.attrs["guidance"]


def test_cf_output_leaves_its_input_untouched(written):
    ds = _open(written[".nc"])
    before = {n: dict(v.attrs) for n, v in ds.variables.items()}
    cf_output(ds.drop_vars(["lat_bounds", "lon_bounds"]))
    assert {n: dict(v.attrs) for n, v in ds.variables.items()} == before


def test_a_resumed_batch_store_is_consolidated_again(tiny_model, batch_store, tmp_path):
    """A store whose last chunk was lost is resumed and opens without a warning after."""
    import shutil

    store = tmp_path / batch_store.name
    shutil.copytree(batch_store, store)
    before = _open(store)
    shutil.rmtree(store / MARKERS / "c000001")
    manifest_path = store / "zarr.json"
    meta = json.loads(manifest_path.read_text())
    manifest = json.loads(meta["attributes"]["hdm_manifest"])
    manifest.update(status="running", complete=[0])
    meta["attributes"]["hdm_manifest"] = json.dumps(manifest)
    manifest_path.write_text(json.dumps(meta))
    summary = run_downscale(
        tiny_model.path,
        store,
        **BATCH_RUN,
        resume=True,
    )
    assert summary["chunks_written"] == [1] and read_manifest(store)["status"] == "complete"
    assert sorted(read_markers(store)) == [0, 1]
    after = _open(store)  # consolidated again, markers included: no warning
    xr.testing.assert_identical(after.drop_attrs(), before.drop_attrs())
