"""hdm evaluate downscale reads what a store says about its grids: the training grid's
spacing from its numeric attributes (the text only for older stores), and the coarse
input's cells from its stored CF bounds (the interpolation baselines start from the
cells' middles)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hdm.downscaling.output import training_grid_attrs
from hdm.hilbert.grids import GlobalGrid, LatLonGrid
from hdm.pipelines.evaluate import _interpolated, _interpolation_scores, read_downscale

TIMES = np.array(["2019-03-25T00", "2019-03-25T01"], dtype="datetime64[ns]")
#: the training grid of the UK models: 0.25° over lat 50…58, lon −10…2
TRAINING = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))
TRAINING_TEXT = TRAINING.describe()


def smooth(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth, far from linear field (K) on (time, lat, lon)."""
    shape = 280.0 + 3.0 * np.sin(np.deg2rad(40.0 * lat))[:, None] * np.cos(np.deg2rad(50.0 * lon))
    return np.stack([shape, shape + 1.0])


def truth_file(path, step: float) -> str:
    """The truth on a ``step``° grid over the training domain, as a netCDF file."""
    lat, lon = np.arange(50.0, 58.0 + 1e-9, step), np.arange(-10.0, 2.0 + 1e-9, step)
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), smooth(lat, lon), {"units": "K"})},
        coords={"time": TIMES, "lat": lat, "lon": lon},
    )
    ds.to_netcdf(path)
    return str(path)


def prediction(step: float, attrs: dict, coarse: xr.Dataset | None = None) -> xr.Dataset:
    """A two-member prediction on a ``step``° grid with the store attributes ``attrs`` and
    (``coarse``) a stored coarse input ``t2m_coarse`` with its coordinates."""
    lat, lon = np.arange(50.0, 58.0 + 1e-9, step), np.arange(-10.0, 2.0 + 1e-9, step)
    members = np.stack([smooth(lat, lon) - 0.5, smooth(lat, lon) + 0.5])
    dims = ("time", "lat", "lon")
    ds = xr.Dataset(
        {
            "t2m": (("member", *dims), members, {"units": "K"}),
            "t2m_mean": (dims, members.mean(0), {"units": "K"}),
        },
        coords={"member": [0, 1], "time": TIMES, "lat": lat, "lon": lon},
        attrs=attrs,
    )
    return ds if coarse is None else xr.merge([ds, coarse], combine_attrs="override")


def test_the_training_grid_attributes_are_its_spacings_as_plain_floats(tmp_path):
    attrs = training_grid_attrs(TRAINING)
    assert attrs == {
        "training_grid": TRAINING_TEXT,
        "training_grid_lat_spacing_deg": 0.25,
        "training_grid_lon_spacing_deg": 0.25,
    }
    assert all(type(attrs[f"training_grid_{a}_spacing_deg"]) is float for a in ("lat", "lon"))
    # a periodic longitude axis: 360°/n, not 360°/(n − 1)
    sphere = training_grid_attrs(GlobalGrid.make(19, 36))
    assert sphere["training_grid_lat_spacing_deg"] == pytest.approx(10.0)
    assert sphere["training_grid_lon_spacing_deg"] == pytest.approx(10.0)
    # they survive a netCDF file as numbers
    xr.Dataset(attrs=attrs).to_netcdf(tmp_path / "a.nc")
    back = xr.open_dataset(tmp_path / "a.nc").attrs
    assert float(back["training_grid_lat_spacing_deg"]) == 0.25


@pytest.mark.parametrize(
    "attrs",
    [
        {
            "training_grid": "a 0.25° grid over the UK",  # text the parser cannot read
            "training_grid_lat_spacing_deg": 0.25,
            "training_grid_lon_spacing_deg": 0.25,
        },
        {"training_grid_lat_spacing_deg": 0.25, "training_grid_lon_spacing_deg": 0.25},
        {"training_grid": TRAINING_TEXT},  # a store written before the numbers
    ],
    ids=["numbers, unreadable text", "numbers only", "text only"],
)
def test_a_zero_shot_prediction_takes_its_training_spacing_from_the_store(attrs, tmp_path):
    """A 2× zero-shot prediction (0.125°) accepts a truth on its 0.25° training grid and
    refuses a 0.5° one naming the training grid, whether the store gives the training
    spacing as numbers (whatever its text says) or, written before them, only as text."""
    pred = prediction(0.125, attrs)
    ev = read_downscale(pred, truth_file(tmp_path / "quarter.nc", 0.25))
    assert ev.truth_on_pred.shape == (2, 65, 97) and np.isfinite(ev.truth_on_pred).all()
    with pytest.raises(ValueError, match=r"0.5° × 0.5° \(lat × lon\), coarser than the") as err:
        read_downscale(pred, truth_file(tmp_path / "half.nc", 0.5))
    assert "0.125° × 0.125° and than the 0.25° × 0.25° training grid" in str(err.value)


def test_without_a_readable_training_grid_the_truth_must_match_the_prediction(tmp_path):
    """The control of the test above: no spacing to read (unreadable text, no numbers, or
    numbers that are not spacings), the 0.25° truth is coarser than the 0.125° prediction."""
    quarter = truth_file(tmp_path / "quarter.nc", 0.25)
    for attrs in (
        {"training_grid": "a 0.25° grid over the UK"},
        {"training_grid_lat_spacing_deg": "n/a", "training_grid_lon_spacing_deg": 0.25},
        {"training_grid_lat_spacing_deg": 0.0, "training_grid_lon_spacing_deg": 0.25},
    ):
        with pytest.raises(ValueError, match="give a truth at least as fine as the prediction"):
            read_downscale(prediction(0.125, attrs), quarter)


def stored_coarse(offset: float, bounds: bool, cell_methods: str = "area: mean") -> xr.Dataset:
    """1° cells with edges on whole degrees over lat 50…58, lon −10…2, as a store keeps
    them: their values (smooth, fixed per cell), centres written ``offset``° from the
    cells' middles and (``bounds``) the cells' CF bounds ``coarse_lat_bounds`` /
    ``coarse_lon_bounds``."""
    lat_e, lon_e = np.arange(50.0, 58.01), np.arange(-10.0, 2.01)
    mid_lat, mid_lon = lat_e[:-1] + 0.5, lon_e[:-1] + 0.5
    coarse = xr.DataArray(
        smooth(mid_lat, mid_lon),
        dims=("time", "coarse_lat", "coarse_lon"),
        coords={"time": TIMES, "coarse_lat": mid_lat + offset, "coarse_lon": mid_lon + offset},
        attrs={"units": "K", "cell_methods": cell_methods},
    )
    ds = xr.Dataset({"t2m_coarse": coarse})
    if bounds:
        ds = ds.assign_coords(
            coarse_lat_bounds=(("coarse_lat", "bounds"), np.stack([lat_e[:-1], lat_e[1:]], 1)),
            coarse_lon_bounds=(("coarse_lon", "bounds"), np.stack([lon_e[1:], lon_e[:-1]], 1)),
        )
    return ds


def test_the_interpolation_baselines_start_from_the_stored_cells_middles(tmp_path):
    """Cell means written 0.2° off their cells' middles, with the cells' bounds (the
    longitudes' given upper first): the bilinear and bicubic baselines, and their scores,
    are those of the same cells written at their middles; without the bounds, or for
    point values (``area: point``, the values are at the centres), they are not."""
    truth = truth_file(tmp_path / "quarter.nc", 0.25)
    attrs = training_grid_attrs(TRAINING)

    def read(coarse):
        return read_downscale(prediction(0.25, attrs, coarse), truth)

    middles = read(stored_coarse(0.0, bounds=False))
    offset = read(stored_coarse(0.2, bounds=True))
    unbounded = read(stored_coarse(0.2, bounds=False))
    points = read(stored_coarse(0.2, bounds=True, cell_methods="area: point"))
    for method in ("bilinear", "bicubic"):
        expected = _interpolated(middles, method)
        np.testing.assert_allclose(_interpolated(offset, method), expected, atol=1e-6)
        for other in (unbounded, points):
            assert float(np.abs(_interpolated(other, method) - expected).max()) > 0.01
    scores, expected = _interpolation_scores(offset), _interpolation_scores(middles)
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-6), key
