"""hdm.data.units: reading, comparing and converting units attributes (pint)."""

from __future__ import annotations

import dask.array
import numpy as np
import pytest
import xarray as xr

from hdm.data.units import (
    UnitsError,
    affine,
    convert_spread,
    convert_values,
    is_pressure,
    same_units,
    to_units,
)


def test_spellings_of_one_unit_are_the_same_units():
    for a, b in [
        ("K", "kelvin"),
        ("degK", "K"),
        ("degC", "°C"),
        ("Celsius", "degC"),
        ("m s**-1", "m s-1"),
        ("m s-1", "m/s"),
        ("hPa", "mbar"),
        ("1", "kg kg-1"),
    ]:
        assert same_units(a, b), (a, b)
    assert not same_units("K", "degC")
    assert not same_units("K", None)  # unknown units are not K
    assert same_units(None, " ")  # two unknowns
    # units pint cannot read compare as written (ERA5's evaporation)
    assert same_units("m of water equivalent", " m of water equivalent")
    assert not same_units("m of water equivalent", "m")


def test_conversions_are_the_closed_form_affine_maps():
    np.testing.assert_allclose(affine("degC", "K"), (1.0, 273.15))
    np.testing.assert_allclose(affine("K", "degC"), (1.0, -273.15))
    # °F → K: a = 5/9, b = 273.15 − 32·5/9
    np.testing.assert_allclose(affine("degF", "K"), (5 / 9, 273.15 - 32 * 5 / 9), rtol=1e-12)
    np.testing.assert_allclose(affine("Pa", "hPa"), (0.01, 0.0))
    # meteorology's mb is the millibar (pint alone reads a millibarn, an area)
    assert affine("mb", "hPa") == (1.0, 0.0)
    x = np.array([-40.0, 0.0, 98.6])
    back = convert_values(convert_values(x, "degF", "K"), "K", "degF")
    np.testing.assert_allclose(back, x, atol=1e-9)
    assert convert_values(-40.0, "degF", "degC") == pytest.approx(-40.0)


def test_temperature_scales_spelled_in_words_are_those_scales():
    """Station tables write "deg C", "degrees Celsius", "degrees_F", "Kelvin": pint alone
    reads "deg C" as an angle times a degree Celsius (10 → 0.175 K, silently wrong) and
    "degrees_C" or "Kelvin" not at all."""
    for spelling, scale in [
        ("deg C", "degC"), ("degrees Celsius", "degC"), ("degrees_C", "degC"),
        ("Degree_Celsius", "degC"), ("deg F", "degF"), ("degrees Fahrenheit", "degF"),
        ("Kelvin", "K"), ("deg K", "K"), ("degrees_kelvin", "K"),
    ]:  # fmt: skip
        assert affine(spelling, "K") == pytest.approx(affine(scale, "K")), spelling
    # an angle is still an angle
    assert affine("degrees", "radian") == pytest.approx((np.pi / 180, 0.0))


def test_a_spread_converts_without_the_offset():
    assert convert_spread(2.0, "degC", "K") == pytest.approx(2.0)
    assert convert_spread(9.0, "degF", "K") == pytest.approx(5.0)
    assert convert_spread(300.0, "Pa", "hPa") == pytest.approx(3.0)


def test_to_units_is_lazy_and_keeps_dtype_and_attributes():
    data = dask.array.from_array(np.array([[0.0, 10.0], [-5.0, 20.0]], np.float32), chunks=1)
    t = xr.DataArray(data, dims=("y", "x"), name="t2m", attrs={"units": "°C", "long_name": "T"})
    k = to_units(t, "K", "the coarse field")
    assert isinstance(k.data, dask.array.Array) and k.dtype == np.float32
    assert k.attrs == {"units": "K", "long_name": "T"} and t.attrs["units"] == "°C"
    np.testing.assert_allclose(k.values, t.values + 273.15, rtol=1e-7)
    # already in those units (another spelling): the values are untouched
    same = to_units(k.assign_attrs(units="kelvin"), "K")
    assert same.attrs["units"] == "K" and same.data is k.data
    # unknown units on either side: nothing to convert from or to
    bare = t.copy(deep=False)
    bare.attrs = {}
    assert to_units(bare, "K") is bare
    assert to_units(t, None) is t


def test_errors_name_the_object_and_both_units():
    wind = xr.DataArray(np.zeros(2), dims="x", attrs={"units": "m s-1"})
    with pytest.raises(
        UnitsError,
        match=r"^the coarse field is in 'm s-1' \(\[length\] / "
        r"\[time\]\), which cannot be converted to 'K' \(\[temperature\]\)$",
    ):
        to_units(wind, "K", "the coarse field")
    with pytest.raises(UnitsError, match=r"t2m in a\.nc: cannot read the units 'kelvinz'"):
        affine("kelvinz", "K", "t2m in a.nc")
    assert issubclass(UnitsError, ValueError)  # the CLI's exit code 2


def test_a_bare_f_is_the_farad_and_the_refusal_names_the_spelling_of_fahrenheit():
    # a station table in Fahrenheit labelled "F": refused, not read as °F (nor as farads)
    table = xr.DataArray(np.array([50.0, 59.0]), dims="obs", attrs={"units": "F"})
    with pytest.raises(
        UnitsError,
        match=r"^stations in s\.csv is in 'F' \(.*\), which cannot be converted to 'K' "
        r"\(\[temperature\]\); 'F' is the farad; for Fahrenheit write 'degF'$",
    ):
        to_units(table, "K", "stations in s.csv")
    with pytest.raises(UnitsError, match=r"'F' is the farad; for Fahrenheit write 'degF'$"):
        affine("K", "F", "t2m in a.nc")  # asked for in "F"
    np.testing.assert_allclose(to_units(table.assign_attrs(units="degF"), "K"), [283.15, 288.15])
    # no hint where neither side is a temperature, nor for "C" (cf-xarray reads it as °C)
    with pytest.raises(UnitsError) as err:
        affine("F", "m s-1", "x")
    assert "degF" not in str(err.value)
    assert affine("C", "K") == (1.0, 273.15)


def test_pressure_units():
    assert is_pressure("Pa") and is_pressure("mb") and is_pressure("hPa")
    assert not is_pressure("m") and not is_pressure(None) and not is_pressure("nonsense")
