"""Plots: every function writes a readable PNG of the expected size, atomically; maps are
cartopy maps with coastlines drawn offline from the shipped Natural Earth files; the
spread–skill binning puts a calibrated ensemble on the 1:1 line."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import cartopy
import cartopy.crs as ccrs
import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from cartopy.feature import NaturalEarthFeature
from cartopy.io import shapereader
from cartopy.mpl.feature_artist import FeatureArtist
from cartopy.mpl.geoaxes import GeoAxes
from matplotlib.figure import Figure

from hdm import plotting
from hdm.data.schema import lat_weights
from hdm.domains.shipped import ShippedDataError, shipped_path
from hdm.metrics import probabilistic as pm

DPI = 120  # hdm.plotting._save


def _read_png(path, figsize):
    """The image as an array, after checking it is a non-empty PNG whose pixel size is
    that of ``figsize`` at the save dpi, give or take the tight bounding box."""
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 0.7 * figsize[0] * DPI < width < 1.2 * figsize[0] * DPI, (width, figsize)
    assert 0.7 * figsize[1] * DPI < height < 1.25 * figsize[1] * DPI, (height, figsize)
    assert not list(path.parent.glob(".*tmp*")), "a temporary file was left behind"
    return image


def _ensemble_dataset(members=3, times=2, seed=0):
    """A small dataset in the layout of hdm.downscale's output, with the coarse input."""
    rng = np.random.default_rng(seed)
    lat, lon = np.arange(50.0, 54.0, 0.25), np.arange(-4.0, 2.0, 0.25)
    time = pd.date_range("2019-03-28", periods=times, freq="6h")
    base = 280 + 3 * np.sin(np.deg2rad(20 * lat))[:, None] + np.cos(np.deg2rad(30 * lon))[None]
    values = base + rng.normal(0, 0.5, (members, times, lat.size, lon.size))
    ens = xr.DataArray(
        values,
        dims=("member", "time", "lat", "lon"),
        coords={"member": np.arange(members), "time": time, "lat": lat, "lon": lon},
        attrs={"units": "K"},
    )
    ds = xr.Dataset({"t2m": ens, "t2m_mean": ens.mean("member"), "t2m_std": ens.std("member")})
    coarse = ens.mean("member").coarsen(lat=4, lon=4).mean()
    ds["t2m_coarse"] = coarse.rename(lat="coarse_lat", lon="coarse_lon")
    ds.attrs["guidance"] = "mmps"
    return ds


def test_plot_functions_writes_a_png_with_and_without_real_curves(tmp_path):
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 40)
    generated = rng.normal(size=(60, 1)) * x**2 + 0.1 * rng.normal(size=(60, 40))
    real = rng.normal(size=(50, 1)) * x**2
    path = plotting.plot_functions(tmp_path / "f.png", x, generated, real, title="t")
    _read_png(path, (11, 4))
    alone = plotting.plot_functions(tmp_path / "g.png", x, generated, levels=(0.9, 0.5, 0.2))
    _read_png(alone, (11, 4))


def test_plot_downscale_maps_writes_a_png(tmp_path):
    ds = _ensemble_dataset()
    stations = (np.array([51.0, 52.5]), np.array([-1.0, 0.5]))
    path = plotting.plot_downscale_maps(
        tmp_path / "maps.png",
        ds,
        "t2m",
        1,
        truth=ds["t2m_mean"].isel(time=1).values,
        stations=stations,
        heldout=stations,
        n_members=2,
    )
    # truth, coarse, mean, std, 2 members: 6 panels on 4 columns, 2 rows.
    _read_png(path, (3.6 * 4, 3.0 * 2))


def _captured_figure(monkeypatch) -> list[Figure]:
    """The figures a plot function saves, captured before they are written."""
    figures: list[Figure] = []
    save = plotting._save

    def capture(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plotting, "_save", capture)
    return figures


def _features(ax) -> dict[str, object]:
    """The Natural Earth features drawn on a GeoAxes, by name."""
    return {
        artist._feature.name: artist._feature
        for artist in ax.artists + ax.collections
        if isinstance(artist, FeatureArtist) and isinstance(artist._feature, NaturalEarthFeature)
    }


def _map_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_title()]  # colour bars have no title


def test_every_map_panel_has_a_projection_coastlines_and_borders(tmp_path, monkeypatch):
    figures = _captured_figure(monkeypatch)
    ds = _ensemble_dataset()
    path = plotting.plot_downscale_maps(tmp_path / "maps.png", ds, "t2m", 0, n_members=2)
    _read_png(path, (3.6 * 4, 3.0 * 2))  # coarse, mean, std, 2 members: 2 rows of 4
    panels = _map_axes(figures[0])
    assert [ax.get_title() for ax in panels] == [
        "coarse input", "ensemble mean", "ensemble std", "member 0", "member 1"
    ]  # fmt: skip
    for ax in panels:
        assert isinstance(ax, GeoAxes) and isinstance(ax.projection, ccrs.PlateCarree)
        features = _features(ax)
        assert features["coastline"].scale == "50m"
        assert features["admin_0_countries"].category == "cultural"
        np.testing.assert_allclose(
            ax.get_extent(ccrs.PlateCarree()), [-4.125, 1.875, 49.875, 53.875]
        )


def test_one_member_maps_show_the_member_without_a_mean_or_std(tmp_path, monkeypatch):
    figures = _captured_figure(monkeypatch)
    ds = _ensemble_dataset().isel(member=[0])
    plotting.plot_downscale_maps(tmp_path / "one.png", ds, "t2m", 0, n_members=3)
    titles = [ax.get_title() for ax in _map_axes(figures[0])]
    assert titles == ["coarse input", "member 0"]


def test_maps_log_no_pyshp_note_about_the_shipped_files(tmp_path, caplog):
    """The shipped .dbf files lack the optional EOF byte, which pyshp notes at INFO on
    every read; drawing a map keeps that note out of the run's log."""
    import logging

    folder = shipped_path("natural_earth", "test")
    shp = next(Path(folder).rglob("ne_50m_coastline.shp"))
    pyshp = logging.getLogger("shapefile")
    with caplog.at_level(logging.INFO, logger="shapefile"):
        pyshp.removeFilter(plotting._not_the_eof_note)
        try:
            list(shapereader.Reader(shp).records())
        finally:
            pyshp.addFilter(plotting._not_the_eof_note)
        assert any("EOF byte" in r.getMessage() for r in caplog.records)  # the note exists
        caplog.clear()
        list(shapereader.Reader(shp).records())
        plotting.plot_downscale_maps(tmp_path / "m.png", _ensemble_dataset(), "t2m", 0)
    assert not [r for r in caplog.records if r.name == "shapefile"]


def test_a_global_field_is_mapped_on_robinson_with_coastlines(tmp_path, monkeypatch):
    figures = _captured_figure(monkeypatch)
    lat, lon = np.arange(-88.0, 90.0, 4.0), np.arange(0.0, 360.0, 4.0)
    ens = xr.DataArray(
        np.random.default_rng(0).normal(280, 5, (2, 1, lat.size, lon.size)),
        dims=("member", "time", "lat", "lon"),
        coords={"time": pd.date_range("2020-01-01", periods=1), "lat": lat, "lon": lon},
        name="t2m",
    )
    ds = xr.Dataset({"t2m": ens, "t2m_mean": ens.mean("member"), "t2m_std": ens.std("member")})
    path = plotting.plot_downscale_maps(tmp_path / "globe.png", ds, "t2m", n_members=1)
    _read_png(path, (3.6 * 3, 3.0))
    for ax in _map_axes(figures[0]):
        assert isinstance(ax.projection, ccrs.Robinson)
        assert set(_features(ax)) == {"coastline"} and _features(ax)["coastline"].scale == "110m"


def test_maps_are_drawn_from_the_shipped_files_without_network(tmp_path, monkeypatch):
    """cartopy's own data folder empty and every socket refused: the outlines still come
    from data/natural_earth, and a file that is not shipped is an error, not a download."""

    def refuse(*args, **kwargs):
        raise OSError("network access during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setitem(cartopy.config, "data_dir", tmp_path / "empty")
    figures = _captured_figure(monkeypatch)
    stations = (np.array([51.0]), np.array([-1.0]))
    path = plotting.plot_downscale_maps(tmp_path / "m.png", _ensemble_dataset(), "t2m", 0,
                                        stations=stations, n_members=1)  # fmt: skip
    _read_png(path, (3.6 * 4, 3.0))
    ax = _map_axes(figures[0])[0]
    with plotting._offline_natural_earth() as folder:
        coastline = list(_features(ax)["coastline"].intersecting_geometries(ax.get_extent()))
        assert coastline  # the south coast of England
        with pytest.raises(ShippedDataError, match="ne_10m_coastline"):
            shapereader.natural_earth("10m", "physical", "coastline")
    assert folder == shipped_path("natural_earth") and not (tmp_path / "empty").exists()
    assert cartopy.config["pre_existing_data_dir"] != folder  # the caller's setting is back


def test_plot_rank_histogram_and_spectra_write_pngs(tmp_path):
    ds = _ensemble_dataset()
    counts = pm.rank_histogram(ds["t2m"], ds["t2m_mean"])
    _read_png(plotting.plot_rank_histogram(tmp_path / "rank.png", counts), (5, 3.2))
    spectra = {"members": pm.power_spectrum(ds["t2m"]), "mean": pm.power_spectrum(ds["t2m_mean"])}
    _read_png(plotting.plot_spectra(tmp_path / "spectra.png", spectra), (5.5, 3.8))


def _gaussian_ensemble(n_points, members, dispersion, seed=0):
    """Truth and members drawn around a common centre with a per-point σ (spread over
    a factor 20): members have std ``dispersion`` · σ; calibrated when it is 1."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.1), np.log(2.0), n_points))
    centre = rng.normal(0, 5, n_points)
    truth = centre + sigma * rng.standard_normal(n_points)
    ens = centre[:, None] + dispersion * sigma[:, None] * rng.standard_normal((n_points, members))
    return ens, truth


def test_calibrated_ensemble_bins_lie_on_the_one_to_one_line():
    members = 32
    ens, truth = _gaussian_ensemble(100_000, members, 1.0)
    bins = plotting.spread_skill_bins(
        ens.std(axis=1, ddof=1), ens.mean(axis=1) - truth, members, n_bins=8
    )
    assert bins.count.sum() == 100_000 and len(bins.count) == 8
    assert np.all(np.diff(bins.spread) > 0)  # bins are ordered by spread
    # E(x̄ − y)² = (M+1)/M σ² and E s² = σ²: spread_b ≈ RMSE_b in every bin.
    np.testing.assert_allclose(bins.spread / bins.rmse, 1.0, atol=0.08)
    assert abs(bins.ratio - 1.0) < 0.02


def test_underdispersed_ensemble_bins_lie_below_the_line(tmp_path):
    members = 8
    ens, truth = _gaussian_ensemble(50_000, members, 0.5, seed=1)
    spread, error = ens.std(axis=1, ddof=1), ens.mean(axis=1) - truth
    bins = plotting.spread_skill_bins(spread, error, members)
    # Members with half the truth's std: spread ≈ ½ σ √((M+1)/M), RMSE ≈ σ √(1 + ¼/M).
    assert np.all(bins.spread < 0.65 * bins.rmse)
    assert 0.45 < bins.ratio < 0.6
    path = plotting.plot_spread_skill(
        tmp_path / "ssr.png", spread, error, members=members, units="K", title="under"
    )
    _read_png(path, (4.6, 4.4))


def test_pooled_ratio_is_the_metric_spread_skill_with_area_weights():
    ds = _ensemble_dataset(members=5, times=3, seed=2)
    truth = ds["t2m_mean"] + xr.DataArray(
        np.random.default_rng(3).normal(0, 0.6, ds["t2m_mean"].shape), dims=ds["t2m_mean"].dims
    )
    ens = ds["t2m"]
    spread = ens.std("member", ddof=1)
    error = ens.mean("member") - truth
    weights = xr.broadcast(lat_weights(truth), spread)[0].transpose(*spread.dims)
    bins = plotting.spread_skill_bins(spread.values, error.values, 5, weights=weights.values)
    assert bins.ratio == pytest.approx(float(pm.spread_skill(ens, truth)), rel=1e-10)


def test_spread_skill_rejects_one_member_and_mismatched_shapes():
    with pytest.raises(ValueError, match="at least 2 members"):
        plotting.spread_skill_bins(np.ones(4), np.ones(4), 1)
    with pytest.raises(ValueError, match="one shape"):
        plotting.spread_skill_bins(np.ones(4), np.ones(5), 4)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "rank.png"
    plotting.plot_rank_histogram(path, np.array([3, 4, 5]))
    before = path.read_bytes()

    def broken(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plotting.plot_rank_histogram(path, np.array([1, 1, 9]))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank.png"]


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    import importlib

    backend = matplotlib.rcParams["backend"]
    importlib.reload(plotting)
    plotting.plot_rank_histogram(tmp_path / "r.png", np.array([1, 2]))
    assert matplotlib.rcParams["backend"] == backend
