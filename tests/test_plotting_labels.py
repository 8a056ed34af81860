"""Axis labels: units as a reader writes them (K² deg², m s⁻¹), and no "1" for a
dimensionless axis."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hdm import plotting
from hdm.metrics import probabilistic as pm


@pytest.mark.parametrize(
    ("units", "shown"),
    [
        ("(K)**2 deg**2", "K² deg²"),
        ("(m s-1)**2 deg**2", "(m s⁻¹)² deg²"),
        ("deg**2 (field units squared)", "deg² (field units squared)"),
        ("kg kg**-1", "kg kg⁻¹"),
        ("W m-2", "W m⁻²"),
        ("hour", "hour"),
        ("1", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_units_are_written_with_superscripts_and_without_brackets_round_one_unit(units, shown):
    assert plotting.readable_units(units) == shown


def test_a_dimensionless_axis_is_labelled_by_its_name_only():
    assert plotting.axis_label("x", "1") == "x"
    assert plotting.axis_label("x", "") == "x"
    assert plotting.axis_label("x", None) == "x"
    assert plotting.axis_label("time", "hour") == "time (hour)"


def test_the_spectra_plot_labels_power_in_readable_units(tmp_path, monkeypatch):
    figures = []
    save = plotting._save
    monkeypatch.setattr(plotting, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    rng = np.random.default_rng(0)
    field = xr.DataArray(
        280 + rng.normal(size=(16, 24)),
        dims=("lat", "lon"),
        coords={"lat": np.arange(50.0, 54.0, 0.25), "lon": np.arange(-4.0, 2.0, 0.25)},
        attrs={"units": "K"},
    )
    spectrum = pm.power_spectrum(field)
    plotting.plot_spectra(tmp_path / "s.png", {"field": spectrum})
    (ax,) = figures[0].axes
    assert ax.get_ylabel() == "power (K² deg²)"
