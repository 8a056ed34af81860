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


# ------------------------------------------------------ operational conditions (cron)


def test_process_new_runs_a_config_whose_input_is_a_coarse_file(setup, tmp_path, capsys):
    from hdm.data.coarsen import coarse_grain
    from hdm.data.open import open_fields

    inbox, outdir, args = setup
    config = tmp_path / "coarse.yaml"
    daily = Path(args[args.index("--config") + 1]).read_text().splitlines()
    kept = [line for line in daily if not line.startswith(("inputs:", "stations:"))]
    config.write_text("\n".join([*kept, "inputs: {coarse: placeholder.nc}", ""]))
    coarse = coarse_grain(open_fields(UK_FILE, "t2m").isel(time=slice(0, 1)).load(), 4)
    _replace(inbox / "c.nc", coarse)
    args = [*args[:2], str(config), *args[3:]]
    assert main(args) == 0, capsys.readouterr().err
    with xr.open_zarr(outdir / "c.zarr", consolidated=False) as ds:
        # the stored coarse input is the inbox file's cells, not a coarse-grained truth
        np.testing.assert_allclose(ds["t2m_coarse"].values[0], coarse["t2m"].values[0], atol=1e-4)
        assert np.isfinite(ds["t2m"].values).all()


def test_process_new_leaves_the_inbox_to_a_run_that_holds_the_out_dir(setup, capsys):
    from hdm.pipelines.schedule import exclusive_out_dir

    inbox, outdir, args = setup
    _replace(inbox / "a.nc", _day(0))
    outdir.mkdir()
    with exclusive_out_dir(outdir):  # as a cron run still working would
        assert main(args) == 3
        err = capsys.readouterr().err
        assert f"another hdm process-new run (pid {os.getpid()}) is working in {outdir}" in err
        assert not (outdir / "a.zarr").exists()
    assert main(args) == 0  # the lock goes with its holder
    assert read_manifest(outdir / "a.zarr")["status"] == "complete"


def test_a_killed_runs_temporary_store_is_removed_by_the_next(setup, tmp_path):
    inbox, outdir, args = setup
    outdir.mkdir()
    dead = 2**22 + 12345  # above Linux's default pid_max
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    stale = outdir / f".a.zarr.creating-{dead}"
    (stale / "t2m").mkdir(parents=True)
    alive = outdir / f".a.zarr.creating-{os.getppid()}"  # a live process's: left alone
    alive.mkdir()
    _replace(inbox / "a.nc", _day(0))
    assert main(args) == 0
    assert not stale.exists() and alive.exists()
    assert read_manifest(outdir / "a.zarr")["status"] == "complete"


def test_process_new_names_entries_it_cannot_use_and_does_the_rest(setup, capsys):
    inbox, outdir, args = setup
    args = [*args, "--pattern", "*.nc*"]
    _replace(inbox / "same.nc", _day(0))
    _replace(inbox / "same.nc4", _day(24))  # both would make same.zarr
    (inbox / "store.nc").mkdir()  # a folder (a zarr store) matching the pattern
    (inbox / "gone.nc").symlink_to(inbox / "nowhere.nc")
    _replace(inbox / "good.nc", _day(0))
    _replace(inbox / ".partial.nc", _day(0))  # hidden: a download not finished
    with open(bytes(inbox) + b"/caf\xe9.nc", "wb") as f:  # a Latin-1 name
        f.write((inbox / "good.nc").read_bytes())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "same.nc4 would be written to the same store" in err
    assert "same.nc would be written to the same store" in err
    assert "a folder, not a file" in err and "store.nc" in err
    assert "a broken symbolic link" in err and "gone.nc" in err
    assert "its name is not valid UTF-8" in err
    assert read_manifest(outdir / "good.zarr")["status"] == "complete"
    made = sorted(p.name for p in outdir.iterdir() if not p.name.startswith(".hdm"))
    assert made == ["good.zarr", "good.zarr.config.yaml", "good.zarr.input.json"]
    assert main(args) == 2  # still there, still named: not taken as done


def test_an_input_replaced_while_it_is_downscaled_is_a_failure_and_made_again(
    setup, capsys, monkeypatch
):
    import hdm.pipelines.job as job

    inbox, outdir, args = setup
    path, store = inbox / "latest.nc", outdir / "latest.zarr"
    _replace(path, _day(0))
    run = job.run_downscale_job

    def replaced_midway(*a, **k):
        out = run(*a, **k)
        _replace(path, _day(24))  # the next file lands before the run has finished
        return out

    monkeypatch.setattr(job, "run_downscale_job", replaced_midway)
    assert main(args) == 1
    assert "changed while it was being downscaled" in capsys.readouterr().err
    monkeypatch.setattr(job, "run_downscale_job", run)
    assert main(args) == 0  # made again from the file as it is now
    assert _store_time(store) == _day(24).time.values[0]
    assert main(args) == 3


def test_a_bad_new_input_leaves_no_record_behind(setup):
    inbox, outdir, args = setup
    (inbox / "broken.nc").write_bytes(b"CDF\x01 truncated")
    assert main(args) == 2
    assert not (outdir / "broken.zarr.input.json").exists()
    assert not (outdir / "broken.zarr").exists()


def test_sigterm_stops_a_command_as_ctrl_c_does_with_its_own_exit_code(monkeypatch, capsys):
    import signal

    import hdm.pipelines.cli as cli

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(cli.COMMANDS, "config", killed)
    assert main(["config", "show", "x.yaml"]) == 143
    assert "hdm: terminated (SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before  # put back for the caller


def test_a_replacement_killed_midway_is_resumed_not_restarted(setup, caplog, monkeypatch):
    import hdm.pipelines.batch as batch

    caplog.set_level(logging.INFO, logger="hdm")
    inbox, outdir, args = setup
    path, store = inbox / "latest.nc", outdir / "latest.zarr"
    _replace(path, _day(0))
    assert main(args) == 0
    with xr.open_dataset(UK_FILE) as ds:  # the replacement: two times, two chunks
        _replace(path, ds.isel(time=slice(24, 26)).load())
    run_chunk, calls = batch.run_chunk, []

    def killed_at_the_second(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as kill stops the run between chunks
        return run_chunk(task)

    monkeypatch.setattr(batch, "run_chunk", killed_at_the_second)
    assert main(args) == 130
    calls.clear()
    caplog.clear()
    assert main(args) == 0
    assert len(calls) == 1  # only the chunk the killed run had not done
    assert "resuming" in caplog.text and "changed since its store" not in caplog.text
    with xr.open_zarr(store, consolidated=False) as ds:
        assert ds.sizes["time"] == 2 and np.isfinite(ds["t2m"].values).all()
    assert main(args) == 3
