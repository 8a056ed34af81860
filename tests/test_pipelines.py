"""Pipelines: configs, training state (resume, divergence), checkpoints, CLI errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.hilbert.checkpoints import CheckpointError, load_checkpoint
from hdm.hilbert.grids import IntervalGrid
from hdm.hilbert.training import TrainingDiverged, train
from hdm.pipelines.cli import main
from hdm.pipelines.config import ConfigError, load_train_config
from hdm.pipelines.train import build_model, grid_from_coordinate, run_training

ROOT = Path(__file__).resolve().parents[1]
QUADRATIC = ROOT / "configs" / "functional" / "quadratic.yaml"
TINY = [
    "model.width=8",
    "model.n_modes=8",
    "model.n_layers=2",
    "model.time_dim=16",
    "optim.steps=6",
    "optim.batch_size=8",
    "optim.checkpoint_every=3",
    "optim.warmup_steps=2",
]


def tiny_setup(tmp_path, **optim):
    cfg = load_train_config(QUADRATIC, TINY)
    cfg = replace(cfg, optim=replace(cfg.optim, **optim))
    torch.manual_seed(0)
    model = build_model(cfg)
    grid = IntervalGrid(-1, 1, 16)
    data = torch.randn(32, 1, 16, generator=torch.Generator().manual_seed(5))
    return cfg, model, grid, data


def test_config_misspelled_key_is_named_with_suggestion(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {dataset: quadratic}\noptim: {stpes: 10}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.stpes'; did you mean 'steps'"):
        load_train_config(path)


def test_config_missing_required_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {width: 8}\n")
    with pytest.raises(ConfigError, match=r"missing required key 'data'"):
        load_train_config(path)


def test_config_override_and_types():
    cfg = load_train_config(QUADRATIC, ["optim.steps=7", "noise.kind=white"])
    assert cfg.optim.steps == 7 and cfg.noise.kind == "white"
    assert cfg.noise.build().describe() == "white"
    with pytest.raises(ConfigError, match=r"optim\.steps must be an integer, got 'many'"):
        load_train_config(QUADRATIC, ["optim.steps=many"])


def test_config_types_lists_and_nulls():
    """Lists are YAML lists, unset values null, choices checked (with the closest)."""
    cfg = load_train_config(QUADRATIC, ["data.variables=[u10, v10]", "model.n_modes_2=null"])
    assert cfg.data.variables == ["u10", "v10"] and cfg.model.n_modes_2 is None
    assert load_train_config(QUADRATIC, ["data.variables=t2m"]).data.variables == ["t2m"]
    with pytest.raises(ConfigError, match=r"data\.variables must be a list of strings, got 5"):
        load_train_config(QUADRATIC, ["data.variables=5"])
    with pytest.raises(ConfigError, match=r"write a YAML list: \[t2m,u10\]"):
        load_train_config(QUADRATIC, ["data.variables=t2m,u10"])
    with pytest.raises(ConfigError, match=r"optim\.steps must be an integer, got \[1, 2\]"):
        load_train_config(QUADRATIC, ["optim.steps=[1, 2]"])
    with pytest.raises(ConfigError, match=r"sample\.sampler must be one of .*did you mean 'heun'"):
        load_train_config(QUADRATIC, ["sample.sampler=huen"])


def test_downscale_config_checks_guidance_options_by_name():
    from hdm.pipelines.job import downscale_config

    cfg = downscale_config({}, ["ensemble.guidance_options.cg_steps=5"], checkpoint="m.pt")
    assert cfg.ensemble.guidance_options == {"cg_steps": 5}
    with pytest.raises(
        ConfigError,
        match=r"guidance 'mmps' takes no option 'cg_step' .*"
        r"did you mean 'cg_steps'.*its options: cg_steps \(default 0\), cg_tol",
    ):
        downscale_config({}, ["ensemble.guidance_options.cg_step=5"], checkpoint="m.pt")
    with pytest.raises(ConfigError, match=r"guidance 'dps' takes no option 'cg_steps'.*scale"):
        downscale_config({}, ["ensemble.guidance=dps", "ensemble.guidance_options={cg_steps: 5}"])


def test_cli_unknown_guidance_option_is_bad_input(tmp_path, capsys):
    args = [
        "downscale",
        "m.pt",
        "--truth",
        "x.nc",
        "--factor",
        "4",
        "--out",
        str(tmp_path / "o.zarr"),
    ]
    assert main([*args, "--set", "ensemble.guidance_options.gamma=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "guidance 'mmps' takes no option 'gamma'" in err
    assert "cg_steps" in err and "Traceback" not in err


def test_resume_is_bit_exact(tmp_path):
    cfg, model, grid, data = tiny_setup(tmp_path)
    straight = train(model, data, grid, cfg.optim, tmp_path / "a.pt", progress=False)

    cfg, model, grid, data = tiny_setup(tmp_path)

    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, data, grid, cfg.optim, tmp_path / "b.pt", progress=False, on_step=interrupt)
    assert load_checkpoint(tmp_path / "b.pt")["step"] == 3
    cfg, model, grid, data = tiny_setup(tmp_path)  # a fresh process would rebuild everything
    resumed = train(model, data, grid, cfg.optim, tmp_path / "b.pt", resume=True, progress=False)
    assert resumed.steps == straight.steps == 6
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert a["losses"] == b["losses"]


def test_nan_during_training_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg, model, grid, data = tiny_setup(tmp_path, steps=10, checkpoint_every=2)

    def poison(step, loss):
        if step == 5:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"diverged at step 6.*last good checkpoint.*step 4"):
        train(model, data, grid, cfg.optim, tmp_path / "c.pt", progress=False, on_step=poison)
    kept = load_checkpoint(tmp_path / "c.pt")
    assert kept["step"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


def test_nan_in_training_data_names_the_sample(tmp_path):
    cfg, model, grid, data = tiny_setup(tmp_path)
    data[17, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite values in sample 17"):
        train(model, data, grid, cfg.optim, tmp_path / "d.pt", progress=False)
    assert not (tmp_path / "d.pt").exists()


def test_truncated_and_incompatible_checkpoints(tmp_path):
    cfg, model, grid, data = tiny_setup(tmp_path, steps=1)
    train(model, data, grid, cfg.optim, tmp_path / "ok.pt", progress=False)
    raw = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or not an hdm checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    payload = load_checkpoint(tmp_path / "ok.pt")
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_irregular_coordinate_is_refused():
    assert grid_from_coordinate(np.linspace(0, 1, 5)).shape == (5,)
    with pytest.raises(ValueError, match="not regularly spaced"):
        grid_from_coordinate(np.array([0.0, 1.0, 3.0]))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = load_train_config(QUADRATIC, TINY)
    summary = run_training(cfg, out, progress=False)
    return out, summary


def test_cli_train_sample_evaluate_round_trip(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    assert (out / "model.pt").stat().st_size < (out / "checkpoint.pt").stat().st_size
    shipped = torch.load(out / "model.pt", weights_only=True)
    assert "losses" not in shipped and "optimizer" not in shipped  # inference part only
    assert json.loads((out / "train_log.json").read_text())["steps"] == 6
    nc = tmp_path / "s.nc"
    rc = main(
        [
            "sample",
            str(out / "model.pt"),
            "--n",
            "60",
            "--sampler",
            "dpm2m",
            "--steps",
            "4",
            "--seed",
            "1",
            "--out",
            str(nc),
            "--no-progress",
        ]
    )
    assert rc == 0
    ds = xr.load_dataset(nc)
    assert ds["y"].shape == (60, 100) and np.isfinite(ds["y"]).all()
    assert ds.attrs["nfe"] == 5 and ds.attrs["dataset"] == "quadratic"
    capsys.readouterr()
    rc = main(
        [
            "evaluate",
            "functional",
            "--dataset",
            "quadratic",
            "--samples",
            str(nc),
            "--json",
            "--quick",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "power_rigorous",
        "power_null",
        "power_hdm",
        "mean_rel_l2",
        "mean_rel_l2_floor",
        "cov_rel_hs",
        "cov_rel_hs_floor",
    ):
        assert np.isfinite(report[key]), key


def test_cli_bad_input_messages(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    args = [
        "sample",
        str(out / "model.pt"),
        "--n",
        "4",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "x.nc"),
        "--no-progress",
    ]
    assert main([*args, "--sampler", "hune"]) == 2
    assert "unknown sampler 'hune'; did you mean 'heun'" in capsys.readouterr().err
    assert main([*args, "--sampler", "heun", "--points", "2"]) == 2
    assert "points (--points) must be at least 4" in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists()
    assert (
        main(
            [
                "evaluate",
                "functional",
                "--dataset",
                "quadratik",
                "--samples",
                str(tmp_path / "none.nc"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {dataset: quadratik}\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "did you mean 'quadratic'" in capsys.readouterr().err


def test_hdm_sample_writes_the_format_of_its_suffix(tiny_run, tmp_path, capsys):
    """--out s.zarr is a zarr store, s.nc a netCDF file; any other suffix is one line
    naming the path and the accepted suffixes (exit 2), before sampling, writing nothing."""
    out, _ = tiny_run
    args = ["sample", str(out / "model.pt"), "--n", "2", "--steps", "2", "--no-progress"]
    args += ["--runaway-bound", "none"]  # a barely trained model (tiny_run)
    assert main([*args, "--out", str(tmp_path / "s.zarr")]) == 0
    store = xr.open_zarr(tmp_path / "s.zarr")
    assert store["y"].shape == (2, 100) and store.attrs["nfe"] == 3
    assert main([*args, "--out", str(tmp_path / "s.nc")]) == 0
    ds = xr.open_dataset(tmp_path / "s.nc", engine="netcdf4")
    np.testing.assert_array_equal(ds["y"].values, store["y"].values)  # the same seed
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "s.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"hdm: error: --out {tmp_path / 's.txt'} must end in .nc (netCDF) or .zarr (zarr store)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nc", "s.zarr"]


def test_hdm_sample_refuses_an_existing_output_unless_overwrite(
    tiny_run, tmp_path, capsys, monkeypatch
):
    """An existing --out is refused in one line (exit 2) and left as it was; --overwrite
    replaces it; a write that fails leaves the old output whole and no temporary files."""
    from hdm.pipelines.sample import sample, write_samples

    out, _ = tiny_run
    args = ["sample", str(out / "model.pt"), "--n", "2", "--steps", "2", "--no-progress"]
    args += ["--runaway-bound", "none"]  # a barely trained model (tiny_run)
    for name, engine in (("s.nc", "netcdf4"), ("s.zarr", "zarr")):
        path = tmp_path / name
        assert main([*args, "--seed", "0", "--out", str(path)]) == 0
        first = xr.load_dataset(path, engine=engine)
        capsys.readouterr()
        assert main([*args, "--seed", "1", "--out", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"hdm: error: {path} exists; pass --overwrite to replace it"]
        kept = xr.load_dataset(path, engine=engine)
        np.testing.assert_array_equal(kept["y"].values, first["y"].values)
        assert main([*args, "--seed", "1", "--out", str(path), "--overwrite"]) == 0
        again = xr.load_dataset(path, engine=engine)
        assert again.attrs["seed"] == 1 and not np.array_equal(again["y"], first["y"])
    ds = sample(out / "model.pt", n=2, sampler="heun", steps=2, seed=2, progress=False,
                runaway_bound=None)  # fmt: skip
    before = xr.load_dataset(tmp_path / "s.zarr", engine="zarr")

    def broken(self, store, **kwargs):
        Path(store).mkdir()
        (Path(store) / "zarr.json").write_text("{")  # half-written
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", broken)
    with pytest.raises(OSError, match="disk full"):
        write_samples(ds, tmp_path / "s.zarr", overwrite=True)
    monkeypatch.undo()
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "s.zarr", engine="zarr"), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nc", "s.zarr"]


@pytest.mark.skipif(
    not (ROOT / "data/checkpoints/quadratic/model.pt").exists(), reason="no shipped model yet"
)
def test_shipped_quadratic_model_is_discretisation_invariant():
    """Samples on the 4× refined grid agree with training-grid samples at shared points."""
    from benchmarks.functional import invariance_statistics
    from hdm.pipelines.sample import sample

    model = ROOT / "data/checkpoints/quadratic/model.pt"
    n = 600
    coarse = sample(model, n=n, sampler="dpm2m", steps=12, seed=0, progress=False)
    fine = sample(model, n=n, sampler="dpm2m", steps=12, seed=1, points=397, progress=False)
    assert fine["y"].shape == (n, 397)
    np.testing.assert_allclose(fine["x"].values[::4], coarse["x"].values)
    stats = invariance_statistics(coarse["y"].values, fine["y"].values[:, ::4])
    # Max over 100 correlated points of |z|: under agreement this stays below ~4.
    assert stats["max_mean_z"] < 4.5 and stats["max_var_z"] < 4.5, stats


def test_a_date_that_is_none_is_named_by_its_key():
    """An override YAML reads as a date but no calendar has (month 13) and a config date
    that does not exist (30 February) are each one line naming the key."""
    from hdm.pipelines.config import TimesConfig, apply_overrides

    with pytest.raises(ConfigError, match=r"override 'times.start=2019-13-01': month must be"):
        apply_overrides({}, ["times.start=2019-13-01"])
    with pytest.raises(ValueError, match=r"times.end: '2019-02-30T00' is not a date"):
        TimesConfig(end="2019-02-30T00")
    assert TimesConfig(start="2019-03-25T00").start == "2019-03-25T00"


def test_a_time_range_beyond_the_input_says_where_the_run_ends(caplog):
    from hdm.data.schema import mock_fields
    from hdm.pipelines.batch import run_times
    from hdm.pipelines.config import DownscaleRunConfig, TimesConfig

    field = mock_fields(n_time=3)["t2m"]
    last = str(field.time.values[-1])[:16]
    after = str(field.time.values[-1] + np.timedelta64(3, "h"))
    cfg = replace(DownscaleRunConfig(), times=TimesConfig(end=after))
    with caplog.at_level("WARNING", logger="hdm"):
        assert len(run_times(cfg, field)) == 3
    assert f"the run ends at {last}" in caplog.text
