"""Soundings through ``hdm.downscale`` and ``hdm downscale --profiles`` on a multi-level
prior (issue: radiosonde profiles): the output keeps the level dimension, the soundings
pull the members' columns to them, and bad soundings are one-line errors naming them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hdm.conditioning.profiles import ProfileError
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.radiosondes import atmos_data_dir
from hdm.pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
PRESSURE_LEVELS = str(atmos_data_dir() / "era5_rhine_2020-01-01" / "ERA5_2020-01-01_pl_*.nc")
TIMES = ("2020-01-01T18:00", "2020-01-01T19:00")
#: four of the box's IGRA2 stations (data/atmos/PROVENANCE.md): id, lat, lon
SITES = (
    ("BEM00006458", 50.7456, 4.7633),
    ("FRM00007145", 48.7733, 2.0100),
    ("GMM00010618", 49.6928, 7.3264),
    ("SZM00006610", 46.8117, 6.9425),
)
SOUNDING_LEVELS = (1000.0, 925.0, 850.0, 700.0, 500.0, 300.0, 200.0)


@pytest.fixture(scope="module")
def levels_prior(tmp_path_factory) -> Path:
    """A multi-level prior (u, v, q on the 6 levels of configs/atmos/rhine_levels.yaml)
    trained for 2 steps: the path is tested, not the skill."""
    from hdm.pipelines.config import TrainRunConfig, load_config
    from hdm.pipelines.train import run_training

    out = tmp_path_factory.mktemp("rhine_levels")
    cfg = load_config(
        TrainRunConfig,
        ROOT / "configs" / "atmos" / "rhine_levels.yaml",
        [
            "optim.steps=2", "optim.batch_size=2", "optim.warmup_steps=1",
            "optim.checkpoint_every=2", "model.width=8", "model.n_layers=1",
            "model.n_modes=8", "model.n_modes_2=8", "statics=[]",
        ],
    )  # fmt: skip
    run_training(cfg, out, progress=False)
    return out / "model.pt"


@pytest.fixture(scope="module")
def truth() -> xr.Dataset:
    return open_fields(PRESSURE_LEVELS, ["u", "v", "q"], time=slice(*TIMES)).load()


def _rows(truth: xr.Dataset, sites=SITES, levels=SOUNDING_LEVELS, variables=("u", "v", "q")):
    """Sounding rows (CSV profile table) simulated from the truth's columns (bilinear)."""
    rows = []
    for sid, lat, lon in sites:
        column = truth.interp(lat=lat, lon=lon)
        for t in column["time"].values:
            for level in levels:
                for v in variables:
                    value = float(column[v].sel(time=t, level=level))
                    units = truth[v].attrs.get("units", "")
                    rows.append((sid, lat, lon, str(t)[:19], level * 100.0, v, value, units))
    columns = ["id", "lat", "lon", "time", "pressure", "variable", "value", "units"]
    return pd.DataFrame(rows, columns=columns)


def _write(table: pd.DataFrame, path: Path) -> str:
    table.to_csv(path, index=False)
    return str(path)


FAST = {"members": 2, "sampler": "dpm2m", "steps": 5, "progress": False}


def test_a_multi_level_prior_has_one_channel_per_variable_and_level(levels_prior):
    from hdm.downscaling.prior import load_prior

    prior = load_prior(levels_prior)
    assert prior.levels[:2] == (("u", 300.0), ("u", 500.0)) and len(prior.levels) == 18
    assert prior.metadata["channels"][-1] == ["q", 1000.0]
    assert prior.channel_index("q", 1000.0) == 17 and prior.channel_names[1] == "u@500"
    with pytest.raises(KeyError, match=r"no channel u@250; the levels of u are 300, 500"):
        prior.channel_index("u", 250.0)


def test_soundings_pull_the_members_columns_and_the_output_keeps_the_levels(
    levels_prior, truth, tmp_path
):
    import hdm

    table = _rows(truth)
    csv = _write(table, tmp_path / "soundings.csv")
    # coarse cells at two of the six levels (any subset is an input); winds of the
    # soundings trusted to 0.1 m/s, so that they must pull the members to them
    coarse = coarse_grain(truth.sel(level=[500.0, 850.0]), 4)
    options = {**FAST, "profile_noise": {"u": 0.1, "v": 0.1}}
    free = hdm.downscale(levels_prior, coarse=coarse, **options)
    guided = hdm.downscale(levels_prior, coarse=coarse, profiles=[csv], **options)
    assert guided["u"].dims == ("member", "time", "level", "lat", "lon")
    assert guided["level"].values.tolist() == [300.0, 500.0, 700.0, 850.0, 925.0, 1000.0]
    assert guided["level"].attrs["standard_name"] == "air_pressure"
    assert guided["q_mean"].dims == ("time", "level", "lat", "lon")
    assert all(bool(np.isfinite(guided[v]).all()) for v in ("u", "v", "q"))
    # 4 stations x 2 times, each sounding once; 200 hPa lies above the model's top
    assert len(guided.attrs["soundings"].split(",")) == 8
    assert json.loads(guided.attrs["profile_noise_std"])["u@300"] == 0.1
    assert sorted(json.loads(guided.attrs["coarse_noise_std"])) == [
        f"{v}@{lev}" for v in ("q", "u", "v") for lev in (500, 850)
    ]
    # the members' columns at the stations move to the soundings
    misses = {}
    for name, ds in (("free", free), ("guided", guided)):
        err = []
        for sid, lat, lon in SITES:
            col = ds["u"].interp(lat=lat, lon=lon)
            rows = table[(table["id"] == sid) & (table["variable"] == "u")]
            for _, r in rows[rows["pressure"] <= 100000.0].iterrows():
                if r["pressure"] / 100 in ds["level"].values:
                    at = col.sel(time=np.datetime64(r["time"]), level=r["pressure"] / 100)
                    err.append(float(np.abs(at - r["value"]).mean()))
        misses[name] = np.mean(err)
    assert misses["guided"] < 0.5 * misses["free"], misses


def test_profile_units_are_converted_to_the_models(levels_prior, truth, tmp_path):
    """q in g kg-1 observes the model exactly as the same values in kg kg-1 do."""
    from hdm.downscaling.config import EnsembleConfig
    from hdm.downscaling.core import profile_noise_settings, read_run_profiles
    from hdm.downscaling.inputs import observation_setup
    from hdm.downscaling.prior import load_prior

    prior = load_prior(levels_prior)
    table = _rows(truth, variables=("q",))
    in_grams = table.assign(value=table["value"] * 1000.0, units="g kg-1")
    values = []
    for name, t in (("kg", table), ("g", in_grams)):
        profiles = read_run_profiles([_write(t, tmp_path / f"{name}.csv")], prior)
        setup = observation_setup(
            prior, prior.grid, None, None, truth["time"].values,
            coarse_noise={}, station_noise={}, profiles=profiles,
            profile_noise=profile_noise_settings(prior, EnsembleConfig()),
        )  # fmt: skip
        values.append(setup.values)
    assert values[0].shape == (2, 4 * 6) and np.isfinite(values[0]).all()
    np.testing.assert_allclose(values[1], values[0], rtol=1e-12)


def test_hdm_downscale_cli_with_profiles_writes_levels(levels_prior, truth, tmp_path):
    csv = _write(_rows(truth), tmp_path / "soundings.csv")
    out = tmp_path / "out.zarr"
    code = main(
        [
            "downscale", str(levels_prior), "--truth", PRESSURE_LEVELS, "--factor", "4",
            "--profiles", csv, "--times", TIMES[0], TIMES[0], "--members", "1",
            "--sampler", "dpm2m", "--steps", "3", "--scheduler", "synchronous",
            "--no-progress", "--no-plots", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    ds = xr.open_zarr(out)
    assert ds["v"].dims == ("member", "time", "level", "lat", "lon")
    # one time: the 4 stations' soundings at 18 UTC; those at 19 UTC give no values
    assert ds["u_coarse"].sizes["level"] == 6 and len(ds.attrs["soundings"].split(",")) == 4
    assert np.isfinite(ds["q_mean"].values).all()


def _bad_tables(truth) -> dict[str, tuple[pd.DataFrame, str]]:
    table = _rows(truth, sites=SITES[:1], variables=("u",))
    lone = table[table["pressure"] == 85000.0]
    return {
        "outside the domain": (
            table.assign(lat=60.0),
            r"station BEM00006458 at lat=60 lies outside the grid",
        ),
        "far from every field time": (
            table.assign(time="2020-01-01T18:30:00"),
            r"sounding BEM00006458 at 2020-01-01T18:30.* from the nearest field time "
            r"2020-01-01T18:00",
        ),
        "levels above the model's": (
            table.assign(pressure=table["pressure"] / 10.0),
            r"BEM00006458 .*lie above the model's levels \(300–1000 hPa\)",
        ),
        "one usable level": (lone, r"BEM00006458 .*'u' has 1 usable level"),
        "flagged values only": (table.assign(value=np.nan), r"BEM00006458 .*0 usable level"),
        "a variable the model lacks": (
            table.assign(variable="t", units="K"),
            r"BEM00006458 .*no variable 't' on pressure levels \(it has \['q', 'u', 'v'\]\)",
        ),
        "inconsistent units": (
            table.assign(units=np.where(table["pressure"] > 60000, "m s-1", "knot")),
            r"variable 'u' is given in several units \['knot', 'm s-1'\]",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "outside the domain",
        "far from every field time",
        "levels above the model's",
        "one usable level",
        "flagged values only",
        "a variable the model lacks",
        "inconsistent units",
    ],
)
def test_bad_soundings_are_one_line_errors_with_the_bad_input_code(
    case, levels_prior, truth, tmp_path, capsys
):
    table, message = _bad_tables(truth)[case]
    csv = _write(table, tmp_path / "bad.csv")
    code = main(
        [
            "downscale", str(levels_prior), "--truth", PRESSURE_LEVELS, "--factor", "4",
            "--profiles", csv, "--times", *TIMES, "--members", "1", "--scheduler",
            "synchronous", "--no-progress", "--set", "ensemble.time_tolerance=10min",
            "--out", str(tmp_path / "out.zarr"),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("hdm: error: ")
    assert re.search(message, err[-1]), err[-1]
    assert not (tmp_path / "out.zarr").exists()


def test_soundings_need_a_prior_with_pressure_levels(truth, tmp_path):
    import hdm

    csv = _write(_rows(truth, sites=SITES[:1]), tmp_path / "s.csv")
    uk = ROOT / "data" / "checkpoints" / "uk_t2m"
    with pytest.raises(ProfileError, match=r"has no pressure levels .*\['t2m'\].*soundings"):
        hdm.downscale(uk, profiles=[csv], times=["2019-03-01T00"], progress=False)


def test_hdm_sample_draws_fields_of_a_gridded_model_from_its_folder(levels_prior, tmp_path):
    """``hdm sample MODEL_DIR`` on a gridded model: fields in physical units with their
    levels, the same for the same seed (members are seeded by (seed, "sample/k"))."""
    paths = [tmp_path / f"s{k}.nc" for k in range(2)]
    for path in paths:
        args = ["sample", str(levels_prior.parent), "--n", "2", "--steps", "3", "--out"]
        assert main([*args, str(path), "--no-progress"]) == 0
    first, again = (xr.open_dataset(p) for p in paths)
    assert first["q"].dims == ("sample", "level", "lat", "lon") and first.sizes["level"] == 6
    assert first["u"].attrs["units"] == "m s**-1" and np.isfinite(first["v"]).all()
    xr.testing.assert_identical(first["u"], again["u"])
    with pytest.raises(ValueError, match=r"gridded model: points \(--points\) applies to 1-D"):
        from hdm.pipelines.sample import sample

        sample(levels_prior, n=1, sampler="heun", steps=3, points=10)


def test_coarse_levels_in_pa_without_units_are_refused_with_the_hint():
    """A coarse field whose level coordinate holds Pa but says nothing is read as hPa and
    has none of the model's levels: the one line says they look like Pa, and how to say so."""
    from hdm.downscaling.inputs import model_fields
    from hdm.downscaling.prior import load_prior

    prior = load_prior(ROOT / "data" / "checkpoints" / "rhine_levels" / "model.pt")
    u = xr.DataArray(
        np.zeros((1, 2, 3, 3)),
        dims=("time", "level", "lat", "lon"),
        coords={
            "time": [np.datetime64("2020-01-01T18")],
            "level": [85000.0, 50000.0],
            "lat": [46.0, 50.0, 54.0],
            "lon": [1.0, 5.0, 9.0],
        },
        name="u",
    )
    with pytest.raises(
        ValueError,
        match=r"levels look like Pa \(50000 = 500 hPa\): set the level coordinate.s units "
        r"attribute to .Pa.",
    ):
        model_fields(u.to_dataset(), prior, "coarse input")
    with pytest.raises(ValueError, match=r"none of the model's") as refused:
        model_fields(u.assign_coords(level=[800.0, 600.0]).to_dataset(), prior, "coarse input")
    assert "Pa" not in str(refused.value).split("hPa")[-1]  # hPa levels: no Pa hint
