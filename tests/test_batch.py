"""Batch downscaling: time chunks as Dask tasks, resumable stores, configs, bad input."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hdm.data.stores import read_manifest
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.pipelines.batch import run_batch
from hdm.pipelines.batch_store import StoreConflict, read_markers
from hdm.pipelines.cli import main
from hdm.pipelines.cluster import SchedulerUnreachable, jobqueue_cluster
from hdm.pipelines.config import DownscaleRunConfig, load_config
from hdm.pipelines.job import downscale_config, run_downscale

UK_FILE = str(GRIDDED_DATASETS["uk_t2m"].resolved_path())
STATIONS = "UKM00003808,UKM00003882,UKM00003354"
PROJECT = Path(__file__).resolve().parents[1]
SMALL = {
    "truth": UK_FILE,
    "factor": 4,
    "simulate_stations": STATIONS,
    "members": 2,
    "steps": 6,
    "torch_threads": 1,
    "plots": False,
}


def _cli_args(model, out, times=("2019-03-25T00", "2019-03-25T07"), *extra):
    return [
        "downscale",
        model.path,
        "--truth",
        UK_FILE,
        "--factor",
        "4",
        "--simulate-stations",
        STATIONS,
        "--members",
        "2",
        "--steps",
        "6",
        "--torch-threads",
        "1",
        "--chunk-size",
        "1",
        "--times",
        *times,
        "--out",
        str(out),
        "--no-plots",
        "--no-progress",
        *extra,
    ]


def _values(store: Path) -> dict[str, np.ndarray]:
    with xr.open_zarr(store, consolidated=False) as ds:
        return {name: ds[name].values for name in ds.data_vars}


def _assert_same_store(a: Path, b: Path) -> None:
    va, vb = _values(a), _values(b)
    assert sorted(va) == sorted(vb)
    for name in va:
        assert np.array_equal(va[name], vb[name], equal_nan=True), name
        if np.issubdtype(va[name].dtype, np.floating):
            assert np.isfinite(va[name]).all(), name


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    """An uninterrupted in-process run: 8 times in 8 chunks."""
    out = tmp_path_factory.mktemp("batch") / "ref.zarr"
    summary = run_downscale(
        tiny_model.path,
        out,
        times=("2019-03-25T00", "2019-03-25T07"),
        chunk_size=1,
        progress=False,
        **SMALL,
    )
    assert summary["status"] == "done" and summary["chunks"] == 8
    return out


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tiny_model, reference, tmp_path):
    out = tmp_path / "killed.zarr"
    args = _cli_args(
        tiny_model, out, ("2019-03-25T00", "2019-03-25T07"), "--scheduler", "synchronous"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hdm.pipelines.cli", *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while len(read_markers(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_markers(out)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 2 <= len(before) < 8
    assert read_manifest(out)["status"] == "running"

    resume = _cli_args(
        tiny_model,
        out,
        ("2019-03-25T00", "2019-03-25T07"),
        "--resume",
        "--scheduler",
        "synchronous",
    )
    assert main(resume) == 0
    after = read_markers(out)
    assert sorted(after) == list(range(8))
    # the chunks finished before the kill were not written again
    assert all(after[q] == before[q] for q in before)
    rerun = {after[q]["run_id"] for q in after if q not in before}
    assert len(rerun) == 1 and rerun != {before[next(iter(before))]["run_id"]}
    manifest = read_manifest(out)
    assert manifest["complete"] == list(range(8)) and manifest["status"] == "complete"
    assert len(manifest["runs"]) == 2
    _assert_same_store(out, reference)
    # a third run has nothing to do, and says so with its own exit code
    assert main(resume) == 3


def test_two_workers_give_the_same_output_as_one(tiny_model, reference, tmp_path):
    times = ("2019-03-25T00", "2019-03-25T07")
    one, two = (
        run_downscale(
            tiny_model.path,
            tmp_path / f"w{workers}.zarr",
            times=times,
            chunk_size=2,
            scheduler="local",
            workers=workers,
            progress=False,
            **SMALL,
        )
        for workers in (1, 2)
    )
    assert one["chunks"] == two["chunks"] == 4
    _assert_same_store(tmp_path / "w1.zarr", tmp_path / "w2.zarr")
    # one worker runs one task at a time (no task secedes to start another one)
    spans = sorted(
        (m["started"], m["written"]) for m in read_markers(tmp_path / "w1.zarr").values()
    )
    assert all(nxt[0] >= prev[1] for prev, nxt in itertools.pairwise(spans)), spans
    assert len({m["pid"] for m in read_markers(tmp_path / "w2.zarr").values()}) == 2
    # and the chunking does not change the values either (per-time seeds)
    _assert_same_store(tmp_path / "w1.zarr", reference)


def test_netcdf_output_is_assembled_and_the_work_store_removed(tiny_model, tmp_path):
    out = tmp_path / "one.nc"
    run_downscale(
        tiny_model.path,
        out,
        times=("2019-03-25T00", "2019-03-25T01"),
        chunk_size=1,
        progress=False,
        **SMALL,
    )
    ds = xr.open_dataset(out)
    assert ds["t2m"].shape == (2, 2, 33, 49) and np.isfinite(ds["t2m"].values).all()
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (tmp_path / "one.nc.config.yaml").exists()


def test_a_store_with_a_different_config_is_refused(tiny_model, reference, tmp_path, capsys):
    cfg = downscale_config(
        checkpoint=tiny_model.path,
        out=str(reference),
        times=("2019-03-25T00", "2019-03-25T07"),
        chunk_size=1,
        scheduler="synchronous",
        **{**SMALL, "members": 3},
    )
    with pytest.raises(
        StoreConflict, match=r"different config \(sampling.ensemble.members: 2 -> 3\)"
    ):
        run_batch(cfg, resume=True, progress=False)
    # without --resume an existing store with the same config is refused too, naming both flags
    code = main(
        _cli_args(
            tiny_model, reference, ("2019-03-25T00", "2019-03-25T07"), "--scheduler", "synchronous"
        )
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "8 of 8 chunks done" in err and "--resume" in err and "--overwrite" in err


def test_an_unreachable_scheduler_is_a_clear_error_within_seconds(tiny_model, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = downscale_config(
        {"batch": {"connect_timeout": 2}},
        checkpoint=tiny_model.path,
        out=str(tmp_path / "x.zarr"),
        times=("2019-03-25T00", "2019-03-25T01"),
        scheduler=f"tcp://127.0.0.1:{port}",
        **SMALL,
    )
    t0 = time.monotonic()
    with pytest.raises(
        SchedulerUnreachable,
        match=f"no Dask scheduler answered at tcp://127.0.0.1:{port} within 2 s",
    ):
        run_batch(cfg, progress=False)
    assert time.monotonic() - t0 < 20


def test_a_time_range_without_input_data_is_an_error(tiny_model, tmp_path, capsys):
    code = main(
        _cli_args(
            tiny_model,
            tmp_path / "x.zarr",
            ("2020-01-01T00", "2020-01-02T00"),
            "--scheduler",
            "synchronous",
        )
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no input data in the time range 2020-01-01T00..2020-01-02T00" in err
    assert "2019-03-01T00:00:00..2019-03-31T23:00:00" in err
    assert not (tmp_path / "x.zarr").exists()
    reversed_times = ("2019-03-25T06", "2019-03-25T00")
    assert main(_cli_args(tiny_model, tmp_path / "x.zarr", reversed_times)) == 2
    assert "--times: the start 2019-03-25T06 is after the end 2019-03-25T00" in (
        capsys.readouterr().err
    )


def test_bad_input_met_inside_a_chunk_is_one_line_and_the_bad_input_exit_code(
    tiny_model, tmp_path, capsys
):
    """The driver checks the first time's units and every value against 50 training
    stds; a later time 60 K off (26 stds: not one wild value, but a median beyond 20) is
    met by its chunk's task: exit 2, one line naming the chunk and the input, earlier
    chunks kept for --resume."""
    with xr.open_dataset(UK_FILE) as ds:
        truth = ds.sel(time=["2019-03-25T00", "2019-03-25T01"]).load()
    truth["t2m"][1] = truth["t2m"][1] - 60.0
    path = tmp_path / "mixed_units.nc"
    truth.to_netcdf(path)
    args = _cli_args(tiny_model, tmp_path / "x.zarr", ("2019-03-25T00", "2019-03-25T01"))
    args[args.index(UK_FILE)] = str(path)
    i = args.index("--simulate-stations")
    del args[i : i + 2]  # the coarse field alone: the stations would be checked whole
    code = main([*args, "--scheduler", "synchronous"])
    lines = capsys.readouterr().err.splitlines()
    errors = [ln for ln in lines if "Traceback" in ln or "error" in ln]
    assert code == 2 and len(errors) == 1, errors
    err = errors[0]
    assert err.startswith("hdm: error: chunk 1 (2019-03-25T01")
    assert "training stds from the model's mean of t2m" in err and "--resume" in err
    assert read_manifest(tmp_path / "x.zarr")["complete"] == [0]


def _coarse_file(tmp_path: Path, lat: np.ndarray, name: str) -> Path:
    """A coarse °C field on its own 0.65° grid, under a name the model does not use."""
    with xr.open_dataset(UK_FILE) as ds:
        t2m = ds["t2m"].sel(time=["2019-03-25T00"]).load()
    lon = np.arange(-9.9, 2.0, 0.65)
    coarse = t2m.interp(latitude=lat, longitude=lon).rename(latitude="lat", longitude="lon")
    coarse = (coarse - 273.15).rename("temperature").drop_vars("valid_time", errors="ignore")
    coarse.attrs = {"units": "degC", "standard_name": "air_temperature"}
    path = tmp_path / name
    coarse.to_dataset().to_netcdf(path)
    return path


def _coarse_args(model, coarse: Path, out: Path, *extra) -> list[str]:
    return [
        "downscale", model.path, "--coarse", str(coarse), "--members", "2", "--steps", "4",
        "--torch-threads", "1", "--out", str(out), "--no-plots", "--no-progress",
        "--scheduler", "synchronous", *extra,
    ]  # fmt: skip


def test_a_coarse_field_that_leaves_part_of_the_domain_open_is_refused_before_the_store(
    tiny_model, tmp_path, capsys
):
    """Coarse cells over lat 49.8..53.7 of a 49.9..58.1 domain: the north would be the
    prior alone; one line names the axis, the uncovered strip and the file, nothing is
    written. The same grid over the whole domain (°C, another name) runs, with no warning
    about the variable it was taken as."""
    out = tmp_path / "x.zarr"
    partial = _coarse_file(tmp_path, np.arange(50.1, 54.0, 0.65), "north_missing.nc")
    code = main(_coarse_args(tiny_model, partial, out))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "coarse cells cover lat [49.775, 53.675]" in err[0]
    assert "the 4.45 above lat = 53.675" in err[0] and str(partial) in err[0]
    assert not out.exists()
    whole = _coarse_file(tmp_path, np.arange(50.1, 58.0, 0.65), "whole.nc")
    assert main(_coarse_args(tiny_model, whole, out)) == 0
    printed = capsys.readouterr()
    assert "not trained on" not in printed.err
    assert "2 members x 1 times (1 of 1 chunks) on lat ∈ [50, 58]" in printed.out  # --no-plots
    with xr.open_zarr(out, consolidated=False) as ds:
        assert 270 < float(ds["t2m_mean"].mean()) < 290  # °C taken in K


def test_a_station_outside_the_domain_is_named_before_the_store(tiny_model, tmp_path, capsys):
    whole = _coarse_file(tmp_path, np.arange(50.1, 58.0, 0.65), "whole.nc")
    table = tmp_path / "stations.csv"
    table.write_text(
        "id,lat,lon,time,value\nHEATHROW,51.48,-0.45,2019-03-25T00,280.1\n"
        "MADRID,40.4,-3.7,2019-03-25T00,285.0\n"
    )
    out = tmp_path / "x.zarr"
    code = main(_coarse_args(tiny_model, whole, out, "--stations", str(table)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("hdm: error: stations: station MADRID at lat=40.4 lies outside")
    assert str(table) in err[0] and not out.exists()


def test_an_unwritable_output_directory_fails_before_any_work(tiny_model, tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    out = blocker / "sub" / "x.zarr"
    code = main(
        _cli_args(tiny_model, out, ("2019-03-25T00", "2019-03-25T01"), "--scheduler", "synchronous")
    )
    assert code == 2
    assert f"cannot write the output {out}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


def test_the_shipped_config_loads_and_overrides_apply():
    path = PROJECT / "configs" / "downscale" / "uk_t2m.yaml"
    cfg = load_config(
        type(downscale_config(checkpoint="x")), path, ["ensemble.members=3", "batch.workers=2"]
    )
    assert cfg.ensemble.members == 3 and cfg.batch.workers == 2
    assert cfg.inputs.factor == 4 and cfg.times.every == 6
    assert (PROJECT / cfg.checkpoint).exists()


def test_a_config_with_an_unknown_key_names_it(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("checkpoint: model.pt\nensemble:\n  member: 4\n")
    code = main(["downscale", "--config", str(bad), "--out", str(tmp_path / "x.zarr")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown key 'ensemble.member'" in err and "did you mean 'members'" in err
    code = main(["config", "show", str(bad)])
    assert code == 2


def test_config_show_prints_a_resolved_downscale_config(capsys):
    assert (
        main(
            [
                "config",
                "show",
                str(PROJECT / "configs/downscale/uk_t2m.yaml"),
                "--set",
                "ensemble.seed=7",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "seed: 7" in out and "chunk_size:" in out and "torch_threads:" in out


def test_the_hpc_example_config_makes_a_slurm_job_script_with_its_resources():
    from hdm.pipelines.config import DownscaleRunConfig

    cfg = load_config(DownscaleRunConfig, PROJECT / "examples/hpc/downscale_jobqueue.yaml")
    assert cfg.batch.scheduler == "slurm"
    cluster = jobqueue_cluster(cfg)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH" in script and "-t 01:00:00" in script and "--constraint=cpu" in script
    assert "-p compute" in script and "source .venv/bin/activate" in script
    assert "export MALLOC_MMAP_THRESHOLD_=268435456" in script
    assert "--nthreads 1" in script


@pytest.mark.parametrize("script", ["train_torchrun.slurm", "daily_downscale.slurm"])
def test_the_hpc_shell_scripts_parse(script):
    result = subprocess.run(
        ["bash", "-n", str(PROJECT / "examples/hpc" / script)], capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()


def test_process_new_downscales_each_new_file_once_with_scheduler_exit_codes(
    process_new_args, capsys
):
    inbox, outdir, args = process_new_args
    with xr.open_dataset(UK_FILE) as ds:
        day = ds.isel(time=slice(0, 2)).load()
        nxt = ds.isel(time=slice(24, 25)).load()
    day.to_netcdf(inbox / "t2m_20190301.nc")
    assert main(args) == 0
    first = outdir / "t2m_20190301.zarr"
    assert read_manifest(first)["status"] == "complete"
    markers = read_markers(first)
    assert sorted(markers) == [0, 1]
    assert main(args) == 3  # nothing new
    assert "nothing new" in capsys.readouterr().out
    nxt.to_netcdf(inbox / "t2m_20190302.nc")
    assert main(args) == 0
    assert "t2m_20190302.zarr" in capsys.readouterr().out
    assert read_markers(first) == markers  # the first day was not touched again
    with xr.open_zarr(outdir / "t2m_20190302.zarr", consolidated=False) as ds:
        assert ds.sizes["time"] == 1 and np.isfinite(ds["t2m"].values).all()
    # a truncated file is named and skipped; the file after it is still downscaled
    data = (inbox / "t2m_20190302.nc").read_bytes()
    (inbox / "t2m_20190303.nc").write_bytes(data[: len(data) // 2])
    nxt.assign_coords(time=nxt.time + np.timedelta64(1, "D")).to_netcdf(inbox / "t2m_20190304.nc")
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "bad input (skipped):" in captured.err and "t2m_20190303.nc" in captured.err
    assert "t2m_20190304.zarr" in captured.out
    assert read_manifest(outdir / "t2m_20190304.zarr")["status"] == "complete"


def test_inflation_auto_is_one_factor_per_run_whatever_the_chunks(tiny_model, tmp_path):
    times = ("2019-03-25T00", "2019-03-25T03")
    for size in (1, 4):
        run_downscale(
            tiny_model.path,
            tmp_path / f"c{size}.zarr",
            times=times,
            chunk_size=size,
            inflation="auto",
            progress=False,
            **{**SMALL, "scheduler": "synchronous"},
        )
    _assert_same_store(tmp_path / "c1.zarr", tmp_path / "c4.zarr")
    with xr.open_zarr(tmp_path / "c1.zarr", consolidated=False) as ds:
        factor = ds.attrs["inflation"]
        assert 1.0 <= factor <= 2.0
        assert ds.attrs["inflation_innovations"] == 4 * 3  # 4 times x 3 stations
    saved = load_config(DownscaleRunConfig, tmp_path / "c1.zarr.config.yaml")
    assert float(saved.ensemble.inflation) == pytest.approx(factor, rel=1e-5)
    # A resume takes the recorded λ: the same config, nothing left to do.
    again = run_downscale(
        tiny_model.path,
        tmp_path / "c1.zarr",
        times=times,
        chunk_size=1,
        inflation="auto",
        resume=True,
        progress=False,
        **{**SMALL, "scheduler": "synchronous"},
    )
    assert again["status"] == "nothing to do"


def test_a_warning_met_in_every_chunk_on_dask_workers_is_shown_once_by_the_driver(
    tiny_model, tmp_path, capfd
):
    """An extra variable in the coarse file is warned of by the driver's checks and by every
    chunk, on two worker processes; it is shown once, by the driver (where the CLI gives it
    its one-line form), and nothing reaches the workers' stderr in Python's two-line form."""
    with xr.open_dataset(UK_FILE) as ds:
        t2m = ds["t2m"].sel(time=["2019-03-25T00", "2019-03-25T01"]).load()
    coarse = t2m.coarsen(latitude=4, longitude=4, boundary="trim").mean()
    extra = coarse.to_dataset(name="t2m").assign(d2m=coarse - 2.0)
    path = tmp_path / "with_d2m.nc"
    extra.to_netcdf(path)
    args = _coarse_args(tiny_model, path, tmp_path / "x.zarr")
    args[args.index("synchronous")] = "local"
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main([*args, "--workers", "2", "--chunk-size", "1"]) == 0
    said = [str(w.message) for w in shown if "the model was not trained on" in str(w.message)]
    assert len(said) == 1, said
    assert "not trained on" not in capfd.readouterr().err  # nothing from the workers


def test_one_member_of_an_ensemble_input_is_chosen_with_select(tiny_model, tmp_path, capsys):
    """A coarse file of three ensemble members (ERA5's ``number``) is refused with the flag
    that chooses one; ``--select number=2`` downscales member 2's cells (the store's coarse
    values are member 2's, not the first's nor their mean), ``number=mean`` their mean; a
    value or a dimension the file lacks is one line naming what it holds."""
    with xr.open_dataset(UK_FILE) as ds:
        t2m = ds["t2m"].sel(time=["2019-03-25T00"]).load()
    coarse = t2m.coarsen(latitude=4, longitude=4, boundary="trim").mean()
    members = xr.concat([coarse + k for k in (0.0, 1.0, 2.0)], dim="number")
    path = tmp_path / "ensemble.nc"
    members.assign_coords(number=[0, 1, 2]).to_dataset(name="t2m").to_netcdf(path)
    out = tmp_path / "x.zarr"
    assert main(_coarse_args(tiny_model, path, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'number' (3 values)" in err and "--select number=VALUE" in err, err
    stored = {}
    for choice in ("number=2", "number=mean"):
        assert main([*_coarse_args(tiny_model, path, out, "--select", choice), "--overwrite"]) == 0
        with xr.open_zarr(out, consolidated=False) as ds:
            stored[choice] = ds["t2m_coarse"].load()
    first = coarse.isel(time=0).sortby("latitude").values  # stores hold lat ascending
    np.testing.assert_allclose(stored["number=2"].isel(time=0).values, first + 2.0, atol=1e-4)
    np.testing.assert_allclose(stored["number=mean"].isel(time=0).values, first + 1.0, atol=1e-4)
    capsys.readouterr()
    for bad, said in (
        ("number=7", "'number' holds 0, 1, 2; give one of them, or number=mean"),
        ("numbr=1", "names 'numbr', which is no dimension of the input"),
    ):
        assert main([*_coarse_args(tiny_model, path, out, "--select", bad), "--overwrite"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err


def test_config_differences_tell_two_runs_of_as_many_times_apart():
    from hdm.pipelines.batch_store import config_differences

    old = {"times": ["2019-03-25T00", "2019-03-25T06"], "ensemble": {"members": 2}}
    new = {"times": ["2019-03-26T00", "2019-03-26T06"], "ensemble": {"members": 2}}
    (line,) = config_differences(old, new)
    assert line == (
        "times: '2 times, 2019-03-25T00..2019-03-25T06' -> '2 times, 2019-03-26T00..2019-03-26T06'"
    )
    assert config_differences(old, old) == []
