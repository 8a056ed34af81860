"""hdm evaluate downscale: a truth, store or held-out list it cannot score is one line
(exit 2) naming the problem, not an error from deep inside the scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hdm.data.open import open_fields
from hdm.data.stores import read_manifest, write_manifest
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.downscaling.core import downscale
from hdm.pipelines.cli import main

UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
GLOBAL_1DEG = (
    Path(__file__).resolve().parents[1]
    / "data/atmos/era5_global_1deg_2026-03/era5_global_1deg_2026-03.zarr"
)
STATIONS = "UKM00003808,UKM00003882,UKM00003354"
TIMES = ("2019-03-25T00", "2019-03-25T01")


@pytest.fixture(scope="module")
def prediction(tiny_model, tmp_path_factory) -> Path:
    """A finished batch store of the tiny model: 2 members, 2 times, 3 stations."""
    out = tmp_path_factory.mktemp("evaluate") / "uk.zarr"
    args = ["downscale", tiny_model.path, "--truth", str(UK_FILE), "--factor", "4"]
    args += ["--simulate-stations", STATIONS, "--members", "2", "--steps", "2"]
    args += ["--sampler", "sde2m", "--guidance", "sda", "--runaway-bound", "none"]
    args += ["--times", *TIMES, "--scheduler", "synchronous", "--no-plots", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def truth():
    return open_fields(UK_FILE, "t2m", time=slice(*TIMES))["t2m"].load()


def _evaluate(prediction: Path, truth: Path, capsys, *extra: str) -> str:
    """The one error line of hdm evaluate downscale (asserting exit code 2)."""
    capsys.readouterr()
    args = ["evaluate", "downscale", "--prediction", str(prediction), "--truth", str(truth)]
    assert main([*args, *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hdm:")]
    assert len(err) == 1, err
    return err[0]


def test_a_truth_over_part_of_the_domain_names_both_extents(prediction, truth, tmp_path, capsys):
    crop = tmp_path / "crop.nc"
    truth.sel(lat=slice(52, 56), lon=slice(-6, 0)).to_dataset().to_netcdf(crop)
    err = _evaluate(prediction, crop, capsys)
    assert err == (
        f"hdm: error: the truth {crop} covers lat ∈ [52, 56], lon ∈ [-6, 0], not the "
        "prediction's grid (lat ∈ [50, 58], lon ∈ [-10, 2]): give a truth over the whole "
        "prediction domain"
    )
    # one row short at the northern edge (a whole spacing) is refused too
    short = tmp_path / "short.nc"
    truth.sel(lat=slice(50, 57.8)).to_dataset().to_netcdf(short)
    assert "covers lat ∈ [50, 57.75]" in _evaluate(prediction, short, capsys)


def test_a_truth_coarser_than_the_prediction_names_both_spacings(
    prediction, truth, tmp_path, capsys
):
    coarse = tmp_path / "one_degree.nc"
    truth.isel(lat=slice(None, None, 4), lon=slice(None, None, 4)).to_dataset().to_netcdf(coarse)
    err = _evaluate(prediction, coarse, capsys)
    assert err.startswith(
        f"hdm: error: the truth {coarse} has a grid spacing of 1° × 1° (lat × lon), coarser "
        "than the prediction's 0.25° × 0.25°"
    )
    assert "give a truth at least as fine as the prediction" in err
    if GLOBAL_1DEG.exists():  # the shipped 1° global file
        err = _evaluate(prediction, GLOBAL_1DEG, capsys)
        assert "has a grid spacing of 1° × 1° (lat × lon)" in err


def test_a_zero_shot_prediction_is_scored_against_the_training_grid_only(
    tiny_model, truth, tmp_path
):
    """A 2× zero-shot prediction is compared with a truth on the training grid
    (interpolated onto its grid: finite everywhere, the edges included); a truth coarser
    than the training grid is refused, naming both spacings and the training grid's."""
    from hdm.data.coarsen import coarse_grain
    from hdm.pipelines.evaluate import read_downscale

    ds = downscale(
        tiny_model, coarse=coarse_grain(truth, 4), members=2, steps=2, grid=2,
        guidance="sda", runaway_bound=None, progress=False,
    )  # fmt: skip
    # the training grid's spacing as numbers (what read_downscale reads), beside its text
    assert ds.attrs["training_grid_lat_spacing_deg"] == 0.25
    assert ds.attrs["training_grid_lon_spacing_deg"] == 0.25
    ev = read_downscale(ds, UK_FILE)
    assert ev.truth_on_pred.shape == (2, 65, 97) and np.isfinite(ev.truth_on_pred).all()
    half_path = tmp_path / "half_degree.nc"
    truth.isel(lat=slice(None, None, 2), lon=slice(None, None, 2)).to_dataset().to_netcdf(half_path)
    with pytest.raises(ValueError, match=r"0.5° × 0.5° \(lat × lon\), coarser than the") as err:
        read_downscale(ds, half_path)
    assert "0.125° × 0.125° and than the 0.25° × 0.25° training grid" in str(err.value)


def test_an_incomplete_store_is_refused_naming_resume(prediction, tmp_path, capsys):
    """A store whose run was interrupted (its manifest lists fewer complete chunks than
    planned) is refused instead of scoring its empty chunks."""
    store = tmp_path / "interrupted.zarr"
    shutil.copytree(prediction, store)
    manifest = read_manifest(store)
    manifest.update(complete=[], status="running")
    write_manifest(store, manifest)
    err = _evaluate(store, UK_FILE, capsys)
    assert err.startswith(f"hdm: error: the prediction store {store} is incomplete (0 of 1 ")
    assert f"hdm downscale ... --out {store} --resume" in err


def test_a_conditioning_station_held_out_is_named_by_its_plain_id(prediction, capsys):
    err = _evaluate(prediction, UK_FILE, capsys, "--heldout-stations", "UKM00003808")
    assert "held-out station(s) UKM00003808 were used for conditioning" in err
    assert "np.str_" not in err and "[" not in err
