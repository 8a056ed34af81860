"""Station observations as hdm.downscale takes them (hdm.downscaling.inputs): the forms
accepted (a Dataset on any one dimension, a DataArray, a DataFrame), one-line errors for
the rest, and the checks that tell a missing-value code from values in other units."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from hdm.conditioning.observations import ObservationError
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.stations import simulate_observations, stations_by_id, stations_from_frame
from hdm.downscaling.inputs import (
    check_near_training,
    check_station_overlap,
    in_model_units,
    model_fields,
    observation_setup,
    station_observations,
)

UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
STATIONS = ["UKM00003808", "UKM00003882", "UKM00003354"]
TIMES = np.array(["2019-03-25T00", "2019-03-25T01"], dtype="datetime64[ns]")


@pytest.fixture(scope="module")
def truth():
    return open_fields(UK_FILE, "t2m", time=slice("2019-03-25T00", "2019-03-25T01"))["t2m"].load()


@pytest.fixture(scope="module")
def obs(truth):
    return simulate_observations(truth, stations_by_id(STATIONS), 0.5, 0)


def _setup(model, stations):
    return observation_setup(
        model, model.grid, None, stations, TIMES, coarse_noise={}, station_noise=0.5
    )


def _assert_same_setup(model, stations, obs):
    expected = _setup(model, obs)
    got = _setup(model, stations)
    assert got.station_ids == expected.station_ids == tuple(STATIONS)
    np.testing.assert_array_equal(got.values, expected.values)


def _table(obs):
    return obs.to_dataframe().reset_index()[["id", "lat", "lon", "time", "value"]]


@pytest.mark.parametrize("form", ["to_xarray", "station dim", "DataArray"])
def test_stations_on_another_dimension_condition_as_obs(tiny_model, obs, form):
    """A station Dataset on one dimension other than ``obs`` (``DataFrame.to_xarray()``'s
    ``index``, a ``station`` dimension) or a DataArray of the values conditions the run
    as the obs Dataset does, not as no stations at all."""
    stations = {
        "to_xarray": lambda: _table(obs).to_xarray(),
        "station dim": lambda: obs.rename(obs="station"),
        "DataArray": lambda: obs["value"],
    }[form]()
    _assert_same_setup(tiny_model, stations, obs)
    assert station_observations(stations).sizes == {"obs": obs.sizes["obs"]}


def test_station_overlap_is_checked_on_any_dimension(obs):
    """Observations hours from the run's times are refused on an ``index`` dimension too,
    where they were passed over as no observations."""
    late = _table(obs).assign(time=lambda d: d["time"] + pd.Timedelta("6h")).to_xarray()
    with pytest.raises(ObservationError, match=r"no station observation falls within"):
        check_station_overlap(late, TIMES, "30min")


def test_stations_of_several_dimensions_are_one_error_saying_how_to_flatten(obs):
    gridded = obs.set_index(obs=["id", "time"]).unstack("obs")
    with pytest.raises(ObservationError) as err:
        station_observations(gridded)
    message = str(err.value)
    assert "have 2 dimensions, id (3), time (2)" in message
    assert "along one dimension, obs" in message and ".stack(obs=('id', 'time'))" in message


@pytest.mark.parametrize("form", ["plain", "aliases, any case, tz-aware", "index", "text"])
def test_a_dataframe_of_stations_conditions_as_the_dataset(tiny_model, obs, form):
    """A DataFrame with the columns of a station table: named as a CSV table's may be
    (``Station``, ``Latitude``, ``LON``, ``DateTime``), times timezone-aware (converted
    to UTC) or text, id and time as the index."""
    df = _table(obs)
    if form == "aliases, any case, tz-aware":
        paris = pd.to_datetime(df["time"]).dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
        df = df.assign(time=paris).rename(
            columns={"id": "Station", "lat": "Latitude", "lon": "LON", "time": "DateTime"}
        )
    elif form == "index":
        df = df.set_index(["id", "time"])
    elif form == "text":
        df = df.astype(str)
    _assert_same_setup(tiny_model, df, obs)


def test_a_dataframe_keeps_its_units_and_variable_columns(obs):
    df = _table(obs).assign(value=lambda d: d["value"] - 273.15, units="degC", variable="t2m")
    ds = stations_from_frame(df)
    assert ds.sizes == {"obs": 6} and ds["time"].dtype == np.dtype("datetime64[ns]")
    assert set(ds["units"].values) == {"degC"} and set(ds["variable"].values) == {"t2m"}
    np.testing.assert_allclose(ds["value"].values, obs["value"].values - 273.15)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: d.drop(columns="time"), ValueError,
         r"^the station DataFrame is missing column\(s\) 'time'; found 'id', 'lat'"),
        (lambda d: d.assign(lat=["north", *d["lat"].iloc[1:]]), ValueError,
         r"^the station DataFrame: lat is not a number on row 0 \('north'\)$"),
        (lambda d: d.assign(time=["yesterday", *d["time"].iloc[1:].astype(str)]), ValueError,
         r"^the station DataFrame: unparseable time .* on row 0 \('yesterday'\)$"),
        (lambda d: d.to_numpy(), TypeError,
         r"^stations must be an xarray Dataset .* a pandas DataFrame .*; got numpy.ndarray$"),
        (lambda d: d.to_numpy().tolist(), TypeError, r"; got builtins.list$"),
    ],
)  # fmt: skip
def test_bad_stations_are_one_line_naming_what_they_may_be(tiny_model, obs, change, error, match):
    with pytest.raises(error, match=match):
        _setup(tiny_model, change(_table(obs)))


@pytest.mark.parametrize("field", ["time", "lat", "lon", "id"])
def test_a_missing_station_field_is_named_with_those_expected(tiny_model, obs, field):
    with pytest.raises(ObservationError) as err:
        _setup(tiny_model, obs.drop_vars(field))
    message = str(err.value)
    assert message.startswith(f"the station observations have no {field!r}; they need id, lat")
    assert "present: [" in message and "\n" not in message


def test_values_named_as_the_model_variable_are_taken_as_value(tiny_model, obs):
    """Without a ``value``, the one data variable named as the model's variable is the
    values (documented in station_observations); two candidates are an error."""
    _assert_same_setup(tiny_model, obs.drop_vars("truth").rename(value="t2m"), obs)
    _assert_same_setup(tiny_model, _table(obs).rename(columns={"value": "tas"}), obs)
    with pytest.raises(ObservationError, match=r"have no 'value'; .* present: \['temp'"):
        _setup(tiny_model, obs.rename(value="temp"))


def test_one_missing_value_code_of_two_stations_is_named_not_called_a_units_problem(
    tiny_model, obs
):
    """With two stations, one −9999 moves the median past 20 training stds; it is named
    (station and time) as the missing-value code it is, not reported as other units."""
    two = obs.isel(obs=[0, 2]).copy(deep=True)  # two stations at 00 UTC
    two["value"][0] = -9999.0
    with pytest.raises(ObservationError) as err:
        check_near_training(tiny_model, {}, {"t2m": two})
    message = str(err.value)
    assert message.startswith(f"station {two['id'].values[0]} at 2019-03-25T00:00 of t2m")
    assert "missing-value code?" in message and "other units" not in message
    alone = two.isel(obs=[0])  # the only value, a common code: named the same way
    with pytest.raises(ObservationError, match=r"-9999, \d+ training stds .* missing-value"):
        check_near_training(tiny_model, {}, {"t2m": alone})


def test_values_all_in_other_units_are_still_a_units_problem(tiny_model, obs):
    """Every value in °F without units: the median is far, no value is a code; the error
    asks for units and names the units they fit."""
    fahrenheit = obs.assign(value=(obs["value"] - 273.15) * 9 / 5 + 32)
    fahrenheit["value"].attrs = {}
    with pytest.raises(ObservationError) as err:
        check_near_training(tiny_model, {}, {"t2m": fahrenheit})
    message = str(err.value)
    assert re.search(r"^the station observations lie \d+ training stds", message)
    assert "are they in other units? Give them a units attribute" in message
    assert "in degF they would lie" in message and "missing-value" not in message


def test_values_far_from_their_stated_units_say_the_units_look_wrong(tiny_model, truth, obs):
    """°C values labelled K have a units attribute: the error says it looks wrong (and
    which units the values fit), not to give them one. The same for a units column."""
    coarse = coarse_grain(truth, 4) - 273.15
    coarse.attrs = {"units": "K"}
    celsius = obs.assign(value=(obs["value"] - 273.15).assign_attrs(units="K"))
    column = celsius.assign(units=("obs", ["K"] * celsius.sizes["obs"]))
    for what, fields, stations, kind in [
        ("coarse field's values", {"t2m": coarse}, {}, "units attribute"),
        ("station observations", {}, {"t2m": celsius}, "units attribute"),
        ("station observations", {}, {"t2m": column}, "units column"),
    ]:
        converted = in_model_units(tiny_model, fields, stations)
        with pytest.raises(ObservationError) as err:
            check_near_training(tiny_model, *converted)
        message = str(err.value)
        assert message.startswith(f"the {what} lie ") and "Give them" not in message
        assert f"although their {kind} says 'K': is the {kind} wrong?" in message
        assert "In degC they would lie" in message
    # K labelled °C: the median is shown in the units stated, and the units they fit
    mislabelled = obs.assign(value=obs["value"].assign_attrs(units="degC"))
    with pytest.raises(ObservationError, match=r"says 'degC' \(median 27\d\.?\d* degC\).* In K "):
        check_near_training(tiny_model, *in_model_units(tiny_model, {}, {"t2m": mislabelled}))


def test_an_extra_dimension_is_refused_with_advice_for_python_and_the_command_line(
    tiny_model, truth
):
    ensemble = coarse_grain(truth, 4).expand_dims(number=[0, 1, 2])
    with pytest.raises(ValueError) as err:
        model_fields(ensemble, tiny_model, "coarse field")
    message = str(err.value)
    assert "'number' (3 values)" in message and "--select number=VALUE" in message
    assert ".sel(number=VALUE) or .mean('number')" in message  # hdm.downscale's advice


def test_a_missing_value_code_at_one_station_is_named_whatever_the_other_holds():
    """On the shallow-water prior (h: mean 10000 m, std 465 m) a −9999 lies 43 stds away,
    within the one-value bound, and beside a station at 10000 m moves the median of two
    past 20 stds: it is still named (station and time) as a missing-value code, not
    reported as other units."""
    from pathlib import Path

    from hdm.downscaling.prior import load_prior

    sphere = load_prior(Path(__file__).resolve().parents[1] / "data/checkpoints/shallow_water")
    obs = stations_from_frame(
        pd.DataFrame(
            {
                "id": ["BAD", "OK"],
                "lat": [-45.0, 0.0],
                "lon": [-179.99, 10.0],
                "time": ["2000-01-01T00:00"] * 2,
                "value": [-9999.0, 10000.0],
            }
        )
    )
    with pytest.raises(ObservationError) as err:
        check_near_training(sphere, {}, {"h": obs})
    message = str(err.value)
    assert message.startswith("station BAD at 2000-01-01T00:00 of h is -9999, 43 training stds")
    assert "missing-value code?" in message and "other units" not in message


def test_a_code_among_values_in_other_units_is_left_to_the_units_advice():
    """999 beside 1013 and 1008 (surface pressure in hPa given to a model in Pa: mean
    101325, std 1000) is a pressure in other units like its neighbours, not a
    missing-value code to name: the units advice stays."""
    from hdm.downscaling.inputs import _coded_values

    hpa = np.array([999.0, 1013.0, 1008.0])
    assert not _coded_values(hpa, np.abs(hpa - 101325.0) / 1000.0, 101325.0, 1000.0).any()
