"""Radiosonde profiles as observations of multi-level fields (issue: radiosonde profiles)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdm.conditioning.observations import ObservationError
from hdm.conditioning.profiles import (
    Profile,
    ProfileError,
    profile_operator,
    saturation_vapour_pressure,
    specific_humidity,
    to_model_levels,
    wind_components,
)
from hdm.domains.radiosondes import (
    TruncatedSoundingWarning,
    atmos_data_dir,
    read_igra2_soundings,
)
from hdm.downscaling.soundings import igra2_profiles, match_profile_times, read_profile_table
from hdm.hilbert.grids import LatLonGrid

LEVELS = (1000.0, 850.0, 700.0, 500.0, 300.0)
CHANNELS = [(v, lev) for v in ("u", "t") for lev in LEVELS]
GRID = LatLonGrid.regular((47.0, 52.0), (4.0, 10.0), (11, 13))
T0 = np.datetime64("2020-01-01T12:00", "ns")


def _profile(pressure_hpa, values, station="X1", lat=49.3, lon=6.7, time=T0) -> Profile:
    return Profile(station, lat, lon, time, np.asarray(pressure_hpa) * 100.0, values)


def test_log_pressure_interpolation_is_exact_for_a_profile_linear_in_log_p():
    p = np.array([1013.0, 920.0, 640.0, 410.0, 250.0])
    prof = _profile(p, {"t": 200.0 + 30.0 * np.log(p)})
    levels, values = to_model_levels(prof, "t", LEVELS)
    np.testing.assert_array_equal(levels, LEVELS)  # 250..1013 hPa covers them all
    np.testing.assert_allclose(values, 200.0 + 30.0 * np.log(levels), rtol=1e-12)
    # never extrapolated: a profile from 900 to 600 hPa observes 850 and 700 only
    short = _profile([900.0, 600.0], {"t": np.array([280.0, 260.0])})
    assert list(to_model_levels(short, "t", LEVELS)[0]) == [850.0, 700.0]


def test_wind_components_against_hand_computed_values():
    speed = [10.0, 10.0, 10.0, 5.0, 0.0, 4.0]
    direction = [0.0, 360.0, 90.0, 225.0, 123.0, 180.0]
    u, v = wind_components(speed, direction)
    # from the north (0° and 360°): blowing south; from the east: blowing west;
    # from the south-west: blowing north-east; calm: zero whatever the direction
    np.testing.assert_allclose(u, [0, 0, -10, 5 / np.sqrt(2), 0, 0], atol=1e-12)
    np.testing.assert_allclose(v, [-10, -10, 0, 5 / np.sqrt(2), 0, 4], atol=1e-12)


def test_humidity_conversion_against_reference_values():
    # saturation vapour pressure at 20 °C: 23.39 hPa (Smithsonian Meteorological Tables)
    assert saturation_vapour_pressure(293.15) == pytest.approx(2339.0, rel=3e-3)
    # dewpoint 16 °C at 1000 hPa: e = 18.17 hPa, q = 0.622·e/(p − 0.378·e) = 11.38 g/kg
    assert specific_humidity(1e5, 289.15) == pytest.approx(0.011381, rel=2e-3)
    # the same air by relative humidity: RH = e / e_s(T) at T = 20 °C
    rh = 100 * saturation_vapour_pressure(289.15) / saturation_vapour_pressure(293.15)
    q = specific_humidity(1e5, temperature=293.15, relative_humidity=rh)
    assert q == pytest.approx(specific_humidity(1e5, 289.15), rel=1e-12)


def test_a_profile_simulated_from_a_field_maps_back_to_its_column():
    rng = np.random.default_rng(0)
    field = torch.as_tensor(rng.normal(size=(1, len(CHANNELS), *GRID.shape)))
    lat, lon = 49.5, 7.0  # a grid point: bilinear sampling returns the node's value
    i, j = 5, 6
    column = field[0, :, i, j].numpy()
    prof = _profile(LEVELS, {"u": column[:5].copy(), "t": column[5:].copy()}, lat=lat, lon=lon)
    op, values, labels = profile_operator([prof], CHANNELS, {"u": 1.0, "t": 0.5})
    np.testing.assert_allclose(values, column, rtol=1e-12)
    np.testing.assert_allclose(op.apply(field, GRID)[0].numpy(), column, rtol=1e-12)
    assert labels[0] == "X1 u@1000" and op.noise_std()[-1] == 0.5


def test_the_profile_operator_passes_the_adjoint_dot_product_test():
    profs = [
        _profile([1000.0, 700.0, 400.0], {"u": np.array([1.0, 5.0, 9.0])}, "A", 48.2, 5.1),
        _profile([950.0, 500.0], {"u": np.array([2.0, 4.0]), "t": np.array([280.0, 250.0])},
                 "B", 50.7, 8.9),
    ]  # fmt: skip
    op, values, _ = profile_operator(profs, CHANNELS, {"u": 1.0, "t": 0.5})
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(2, len(CHANNELS), *GRID.shape)))
    w = torch.as_tensor(rng.normal(size=(2, op.n_obs())))
    lhs = (op.apply(x, GRID) * w).sum()
    rhs = (x * op.adjoint(w, GRID, channels=len(CHANNELS))).sum()
    # A: u at 1000, 850, 700, 500 (not 300: above its top); B: u and t at 850, 700, 500
    assert len(values) == op.n_obs() == 4 + 3 + 3
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


@pytest.mark.filterwarnings("ignore::hdm.domains.radiosondes.TruncatedSoundingWarning")
def test_a_real_igra2_sounding_becomes_a_profile_observation():
    ds = read_igra2_soundings(atmos_data_dir() / "igra2" / "USM00070026-data_2010-06-01_subset.txt")
    profiles = igra2_profiles(ds)
    prof = profiles[0]
    assert prof.station == "USM00070026" and {"t", "u", "v", "q"} <= set(prof.values)
    assert prof.dropped > 0  # levels without wind or humidity are dropped and counted
    q = prof.values["q"][np.isfinite(prof.values["q"])]
    assert 0 < q.min() and q.max() < 0.03  # kg/kg: an Arctic summer sounding
    grid = LatLonGrid.regular((69.0, 73.0), (-160.0, -152.0), (9, 17))
    channels = [(v, lev) for v in ("t", "u", "v", "q") for lev in (925.0, 850.0, 500.0)]
    op, values, _ = profile_operator([prof], channels, {"t": 0.5, "u": 1.0, "v": 1.0, "q": 5e-4})
    x = torch.zeros(1, len(channels), *grid.shape, dtype=torch.float64)
    assert op.apply(x, grid).shape == (1, len(values)) and np.isfinite(values).all()
    t500 = values[2]  # t@500 hPa in an Arctic June: about −20 to −30 °C
    assert 235 < t500 < 260


def test_bad_profiles_are_refused_by_name(tmp_path):
    one = _profile([850.0], {"t": np.array([280.0])}, "ONE")
    with pytest.raises(ProfileError, match=r"ONE .*1 usable level"):
        to_model_levels(one, "t", LEVELS)
    high = _profile([200.0, 100.0], {"t": np.array([220.0, 210.0])}, "HIGH")
    with pytest.raises(ProfileError, match=r"HIGH .*lie above the model's levels"):
        to_model_levels(high, "t", LEVELS)
    flagged = _profile([900.0, 500.0], {"t": np.array([np.nan, np.nan])}, "NAN")
    with pytest.raises(ProfileError, match=r"NAN .*0 usable level"):
        to_model_levels(flagged, "t", LEVELS)
    rh = _profile([900.0, 500.0], {"r": np.array([50.0, 40.0])}, "RH")
    lacking = r"RH .*no variable 'r' on pressure levels \(it has \['t', 'u'\]\)"
    with pytest.raises(ProfileError, match=lacking):
        profile_operator([rh], CHANNELS, {"t": 0.5})
    late = _profile([900.0, 500.0], {"t": np.array([280.0, 250.0])}, "LATE",
                    time=np.datetime64("2020-01-01T16:00", "ns"))  # fmt: skip
    with pytest.raises(ProfileError, match=r"LATE .*nearest field time 2020-01-01T12"):
        match_profile_times([late], np.array([T0, T0 - np.timedelta64(6, "h")]))
    far = _profile([900.0, 500.0], {"t": np.array([280.0, 250.0])}, "FAR", lat=60.0)
    op, _, _ = profile_operator([far], CHANNELS, {"t": 0.5})
    with pytest.raises(ObservationError, match="FAR"):
        op.apply(torch.zeros(1, len(CHANNELS), *GRID.shape), GRID)
    table = tmp_path / "p.csv"
    table.write_text(
        "id,lat,lon,time,pressure,variable,value,units\n"
        "S,49,7,2020-01-01T12:00,85000,t,280,K\nS,49,7,2020-01-01T12:00,50000,t,-20,degC\n"
    )
    with pytest.raises(ProfileError, match=r"'t' is given in several units \['K', 'degC'\]"):
        read_profile_table(table)


@pytest.mark.filterwarnings("ignore::hdm.domains.radiosondes.TruncatedSoundingWarning")
def test_a_derived_parameter_file_gives_the_same_kind_of_profile():
    from hdm.downscaling.soundings import read_profiles

    path = atmos_data_dir() / "igra2" / "USM00070026-drvd_2014-09-10_subset.txt"
    profiles = read_profiles(path)
    assert len(profiles) == 2  # the third, truncated sounding is dropped
    prof = profiles[0]
    # the station list places it; the first level as in the file: 1020.95 hPa, 274.9 K,
    # u = −6.0, v = −3.9 m/s, e = 5.706 hPa → q = 0.622 e / (p − 0.378 e)
    assert prof.station == "USM00070026" and prof.lat == pytest.approx(71.2889, abs=1e-3)
    assert prof.time == np.datetime64("2014-09-10T00:00", "ns")
    assert prof.pressure[0] == 102095.0 and prof.values["t"][0] == pytest.approx(274.9)
    assert (prof.values["u"][0], prof.values["v"][0]) == pytest.approx((-6.0, -3.9))
    assert prof.values["q"][0] == pytest.approx(0.621957 * 570.6 / (102095 - 0.378043 * 570.6))


@pytest.mark.filterwarnings("ignore::hdm.domains.radiosondes.TruncatedSoundingWarning")
def test_the_derived_files_columns_agree_with_each_other():
    from hdm.domains.igra2_derived import read_igra2_derived

    ds = read_igra2_derived(atmos_data_dir() / "igra2" / "USM00070026-drvd_2014-09-10_subset.txt")
    ok = np.isfinite(ds["vapour_pressure"]) & np.isfinite(ds["relative_humidity"])
    rh = 100 * ds["vapour_pressure"][ok] / saturation_vapour_pressure(ds["temperature"][ok])
    # the vapour pressure over Bolton's saturation pressure is the reported humidity (the
    # file's own e_s differs by a few tenths of a percent): units and columns line up
    np.testing.assert_allclose(rh, ds["relative_humidity"][ok], atol=2.0)
    assert ds.attrs["n_soundings"] == 2 and float(ds["pressure"].max()) > 1e5


def test_a_real_sounding_guides_a_multi_level_prior_towards_its_column():
    """read → profile observation → MMPS guidance on a prior whose channels are (variable,
    level): the guided members' column at the station moves to the sounding. The prior is
    an untrained network on a grid around the station (the path, not its skill, is
    tested)."""
    from hdm.conditioning.ensembles import draw_members
    from hdm.conditioning.guidance import make_guidance
    from hdm.downscaling.soundings import read_profiles
    from hdm.hilbert.covariance import SpectralCovariance
    from hdm.hilbert.denoisers import PreconditionedDenoiser
    from hdm.hilbert.networks import TimeConditionedFNO
    from hdm.hilbert.process import ForwardProcess
    from hdm.hilbert.sampling import make_sampler
    from hdm.hilbert.schedules import CosineVP

    path = atmos_data_dir() / "igra2" / "USM00070026-data_2010-06-01_subset.txt"
    with pytest.warns(TruncatedSoundingWarning, match="NUMLEV says 147 levels, found 0"):
        prof = read_profiles(path)[0]
    channels = [(v, lev) for v in ("t", "u", "v", "q") for lev in (925.0, 850.0, 500.0)]
    grid = LatLonGrid.regular((69.0, 73.0), (-160.0, -152.0), (9, 17))
    # observations in a normalised space, as a trained prior's normaliser would give
    centre = {"t": 260.0, "u": 0.0, "v": 0.0, "q": 3e-3}
    scale = {"t": 10.0, "u": 10.0, "v": 10.0, "q": 2e-3}
    normalised = Profile(
        prof.station, prof.lat, prof.lon, prof.time, prof.pressure,
        {k: (v - centre[k]) / scale[k] for k, v in prof.values.items()},
    )  # fmt: skip
    op, y, labels = profile_operator(normalised, channels, dict.fromkeys(centre, 0.05))
    torch.manual_seed(0)
    net = TimeConditionedFNO(dim=2, channels=len(channels), width=8, n_modes=(4, 4), n_layers=1)
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 1.0))
    prior = PreconditionedDenoiser(net, process)
    sampler = make_sampler("heun", 8)
    kwargs = dict(seed=0, batch_size=4, channels=len(channels))
    free, _ = draw_members(prior, sampler, grid, 4, **kwargs)
    guided, _ = draw_members(make_guidance("mmps", prior, op, y), sampler, grid, 4, **kwargs)
    assert guided.shape == (4, 12, 9, 17) and torch.isfinite(guided).all()
    miss = {
        name: float((op.apply(x.double(), grid) - torch.as_tensor(y)).abs().mean())
        for name, x in (("free", free), ("guided", guided))
    }
    assert len(labels) == len(y) >= 10 and miss["guided"] < 0.25 * miss["free"]
