"""``hdm process-new``: a replaced input file, a changed config, a bad output folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hdm.data.stores import read_manifest
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.pipelines.cli import main

UK_FILE = str(GRIDDED_DATASETS["uk_t2m"].resolved_path())
STATIONS = "UKM00003808,UKM00003882,UKM00003354"


def _day(index: int) -> xr.Dataset:
    with xr.open_dataset(UK_FILE) as ds:
        return ds.isel(time=slice(index, index + 1)).load()


def _replace(path: Path, ds: xr.Dataset) -> None:
    """Write ``ds`` to ``path`` as a download does: a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.part")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)


@pytest.fixture
def setup(process_new_args):
    return process_new_args


def _store_time(store: Path) -> np.datetime64:
    with xr.open_zarr(store, consolidated=False) as ds:
        return ds["time"].values[0]


def test_process_new_downscales_an_input_replaced_under_the_same_name_again(setup, capsys, caplog):
    caplog.set_level(logging.INFO, logger="hdm")
    inbox, outdir, args = setup
    latest, store = inbox / "latest.nc", outdir / "latest.zarr"
    first, second = _day(0), _day(24)
    _replace(latest, first)
    assert main(args) == 0
    assert _store_time(store) == first.time.values[0]
    assert main(args) == 3  # unchanged: nothing new
    _replace(latest, second)  # the rolling file now holds the next day
    capsys.readouterr()
    caplog.clear()
    assert main(args) == 0
    assert "latest.zarr" in capsys.readouterr().out
    assert f"input {latest} changed since its store was made: downscaling it again" in caplog.text
    assert read_manifest(store)["status"] == "complete"
    assert _store_time(store) == second.time.values[0]
    assert main(args) == 3  # made from the file as it is now: nothing new
    # a store made before identities were recorded counts as complete, as it did
    (outdir / "latest.zarr.input.json").unlink()
    _replace(latest, first)
    assert main(args) == 3
    assert _store_time(store) == second.time.values[0]


def test_process_new_names_the_keys_when_complete_stores_have_another_config(setup, capsys, caplog):
    caplog.set_level(logging.INFO, logger="hdm")
    inbox, outdir, args = setup
    _replace(inbox / "a.nc", _day(0))
    assert main(args) == 0
    caplog.clear()
    assert main(args) == 3
    assert "another config" not in caplog.text  # the same config: no warning
    before = (outdir / "a.zarr" / "zarr.json").read_bytes()
    capsys.readouterr()
    assert main([*args, "--set", "ensemble.members=3"]) == 3  # kept, not redone silently
    assert "nothing new" in capsys.readouterr().out
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ensemble.members: 2 -> 3" in m and "kept" in m for m in warned), warned
    assert sum("another config" in m for m in warned) == 1  # once, not per store
    assert (outdir / "a.zarr" / "zarr.json").read_bytes() == before


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_process_new_unusable_out_dir_is_one_line_not_every_input_bad(
    setup, tmp_path, capsys, where
):
    inbox, _, args = setup
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    (tmp_path / "a_file").write_text("")
    outdir = tmp_path / "a_file" / "out" if where == "under_a_file" else Path("/proc/nonexist/x")
    for name in ("a.nc", "b.nc"):
        (inbox / name).write_bytes(b"not read")
    args = [*args[:-1], str(outdir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bad input" not in err
    lines = [line for line in err.splitlines() if line.startswith("hdm: error:")]
    assert len(lines) == 1 and str(outdir) in lines[0], err


def test_process_new_an_unusable_store_is_a_failure_not_a_bad_input(setup, capsys):
    inbox, outdir, args = setup
    _replace(inbox / "a.nc", _day(0))
    (outdir / "a.zarr").mkdir(parents=True)  # not an hdm store: it is not overwritten
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "bad input" not in err and "failed:" in err and "a.nc" in err
    assert not any((outdir / "a.zarr").iterdir())


def test_process_new_a_bad_replacement_keeps_the_store_and_is_retried(setup, capsys):
    inbox, outdir, args = setup
    path, store = inbox / "a.nc", outdir / "a.zarr"
    _replace(path, _day(0))
    assert main(args) == 0
    good = path.read_bytes()
    tmp = path.with_name(".a.nc.part")
    tmp.write_bytes(good[: len(good) // 2])  # a truncated replacement
    os.replace(tmp, path)
    capsys.readouterr()
    assert main(args) == 2
    assert "bad input (skipped):" in capsys.readouterr().err
    assert read_manifest(store)["status"] == "complete"  # the old store is kept
    assert main(args) == 2  # still the changed (bad) file: not taken as done
    _replace(path, _day(24))
    assert main(args) == 0
    assert _store_time(store) == _day(24).time.values[0]
