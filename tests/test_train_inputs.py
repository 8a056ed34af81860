"""``hdm train``'s inputs: the training period, the data it reads (units, NaN, missing-value
codes, extra dimensions, the path it records), the config's values, and its output folder
(refused when it holds a model, resumed only with the checkpoint's config, nothing left
behind by a failed run)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from hdm.data.units import UnitsError
from hdm.domains.atmosphere import GRIDDED_DATASETS, training_spec
from hdm.hilbert import training
from hdm.hilbert.checkpoints import load_checkpoint
from hdm.pipelines.cli import main
from hdm.pipelines.config import ConfigError, load_train_config, train_config_from_dict
from hdm.pipelines.train import gridded_training_data, run_training, training_data

TINY = {
    "noise": {"kind": "spectral", "kernel": "matern", "nu": 1.5, "lengthscale": 1.0},
    "model": {"width": 8, "n_modes": 8, "n_layers": 1, "time_dim": 16},
    "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
}


@pytest.fixture(scope="module")
def three_days() -> xr.Dataset:
    """Three days of the shipped UK t2m (72 hourly fields, 33 × 49), as the file has them."""
    path = GRIDDED_DATASETS["uk_t2m"].resolved_path()
    with xr.open_dataset(path) as ds:
        return ds.sel(time=slice("2019-03-01", "2019-03-03")).load()


def write(ds: xr.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def mine(path, **data) -> dict:
    """A tiny config of one's own file ``path``."""
    return {
        "name": "mine",
        "data": {
            "dataset": "mine",
            "path": str(path),
            "variables": ["t2m"],
            "train_start": "2019-03-01T00",
            "train_end": "2019-03-03T23",
            **data,
        },
        **TINY,
    }


def config(raw: dict):
    return train_config_from_dict(raw)


# ---------------------------------------------------------------- the training period


@pytest.mark.parametrize(
    ("bound", "period", "n"),
    [
        ({"train_end": "2019-03-02T23"}, ["2019-03-01T00:00:00", "2019-03-02T23:00:00"], 48),
        ({"train_start": "2019-03-24"}, ["2019-03-24T00:00:00", "2019-03-24T23:00:00"], 24),
    ],
)
def test_one_bound_of_a_named_dataset_keeps_the_other_default(bound, period, n):
    data = gridded_training_data(config({"data": {"dataset": "uk_t2m", **bound}, **TINY}))
    assert data.metadata["train_period"] == period
    assert data.metadata["n_train"] == data.tensor.shape[0] == n


def test_the_model_trains_on_the_period_asked_for(tmp_path):
    cfg = config({"data": {"dataset": "uk_t2m", "train_end": "2019-03-02T23"}, **TINY})
    run_training(cfg, tmp_path / "run", progress=False)
    metadata = load_checkpoint(tmp_path / "run" / "model.pt")["metadata"]
    assert metadata["n_train"] == 48
    assert metadata["train_period"] == ["2019-03-01T00:00:00", "2019-03-02T23:00:00"]


def test_one_bound_of_one_s_own_file_runs_to_the_data_s_end(three_days, tmp_path):
    path = write(three_days, tmp_path / "uk.nc")
    data = gridded_training_data(config(mine(path, train_start="2019-03-03T00", train_end=None)))
    assert data.metadata["train_period"] == ["2019-03-03T00:00:00", "2019-03-03T23:00:00"]
    assert data.metadata["n_train"] == 24


def test_a_bound_beyond_the_default_period_is_named():
    cfg = config({"data": {"dataset": "uk_t2m", "train_start": "2019-03-28"}, **TINY})
    with pytest.raises(ValueError, match=r"data\.train_start 2019-03-28 is after the end of"):
        gridded_training_data(cfg)


def test_a_period_overlapping_the_named_dataset_s_test_period_is_refused():
    cfg = config(
        {"data": {"dataset": "uk_t2m", "train_start": "2019-03-20", "train_end": "2019-03-28"}}
    )
    with pytest.raises(ValueError) as err:
        gridded_training_data(cfg)
    message = str(err.value)
    assert "2019-03-20T00:00..2019-03-28T23:00" in message
    assert "test period 2019-03-25T00..2019-03-31T23" in message and "\n" not in message


# ------------------------------------------------------------- the config's values


BAD_VALUES = [
    ("model.width=-4", "model.width"),
    ("model.n_modes=0", "model.n_modes"),
    ("model.n_layers=0", "model.n_layers"),
    ("model.time_dim=0", "model.time_dim"),
    ("model.time_dim=15", "model.time_dim"),
    ("optim.batch_size=0", "optim.batch_size"),
    ("optim.checkpoint_every=0", "optim.checkpoint_every"),
    ("optim.steps=0", "optim.steps"),
    ("optim.steps=-5", "optim.steps"),
    ("optim.grad_clip=-1", "optim.grad_clip"),
    ("optim.lr=-1", "optim.lr"),
    ("data.variables=[t2m, t2m]", "data.variables"),
    ("noise.lengthscale=0", "noise.lengthscale"),
    ("data.train_end=2019-03-01T00", "data.train_start"),
]


@pytest.mark.parametrize(("override", "key"), BAD_VALUES)
def test_a_value_out_of_range_is_one_line_naming_its_key(override, key, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump({"data": {"dataset": "uk_t2m", "train_start": "2019-03-02T00"}, **TINY})
    )
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_train_config(path, [override])
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--set", override, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and key in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------- the data read


def test_a_missing_value_code_is_named_with_its_time_and_place(three_days, tmp_path):
    bad = three_days.copy(deep=True)
    bad["t2m"][7, 10, 10] = -9999.0
    cfg = config(mine(write(bad, tmp_path / "fill.nc")))
    with pytest.raises(ValueError) as err:
        gridded_training_data(cfg)
    message = str(err.value)
    assert "t2m at 2019-03-01T07:00" in message and "is -9999 K" in message
    assert "robust stds from its median" in message and "\n" not in message


def test_unreadable_units_are_refused_and_missing_ones_warned_of(three_days, tmp_path):
    odd = three_days.copy()
    odd["t2m"].attrs["units"] = "Kelvins please"
    path = write(odd, tmp_path / "odd.nc")
    with pytest.raises(UnitsError, match=rf"t2m in {path}: cannot read the units 'Kelvins please'"):
        gridded_training_data(config(mine(path)))
    bare = three_days.copy()
    bare["t2m"].attrs = {}
    path = write(bare, tmp_path / "bare.nc")
    with pytest.warns(UserWarning, match="t2m in .* has no units attribute: downscaling inputs"):
        gridded_training_data(config(mine(path)))


def test_nan_at_the_same_points_at_every_time_is_named_a_mask(three_days, tmp_path):
    masked = three_days.copy(deep=True)
    masked["t2m"] = masked["t2m"].where(masked["longitude"] < -5)
    with pytest.raises(
        ValueError, match=r"t2m is NaN at the same \d+ of 1617 grid points at every"
    ):
        gridded_training_data(config(mine(write(masked, tmp_path / "mask.nc"))))
    one = three_days.copy(deep=True)
    one["t2m"][5, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"t2m is NaN or infinite at 1 grid point\(s\) at 2019-03"):
        gridded_training_data(config(mine(write(one, tmp_path / "one.nc"))))


def test_an_ensemble_dimension_of_one_member_is_dropped_a_longer_one_named(three_days, tmp_path):
    one = gridded_training_data(
        config(mine(write(three_days.expand_dims(number=[0]), tmp_path / "one.nc")))
    )
    assert one.tensor.shape == (72, 1, 33, 49)
    three = write(three_days.expand_dims(number=[0, 1, 2]), tmp_path / "three.nc")
    with pytest.raises(ValueError, match=r"dimension 'number' \(3 values\) beyond \(time"):
        gridded_training_data(config(mine(three)))


def test_a_relative_data_path_is_recorded_absolute(three_days, tmp_path, monkeypatch):
    write(three_days, tmp_path / "in" / "daily" / "uk.nc")
    monkeypatch.chdir(tmp_path)
    absolute = str(tmp_path / "in" / "daily" / "uk*.nc")
    assert gridded_training_data(config(mine("in/daily/uk*.nc"))).metadata["path"] == absolute
    run_training(config(mine("in/daily/uk*.nc")), "run", progress=False)
    monkeypatch.chdir(tmp_path / "in")  # elsewhere, the model's data are still found:
    metadata = load_checkpoint(tmp_path / "run" / "model.pt")["metadata"]
    assert metadata["path"] == training_spec(metadata).path == absolute
    saved = load_train_config(tmp_path / "run" / "config.yaml")  # as hdm gaussian-stats reads
    assert saved.data.path == absolute and training_data(saved).metadata["n_train"] == 72
    gone = {**metadata, "path": str(tmp_path / "moved" / "uk*.nc")}
    with pytest.raises(FileNotFoundError, match="the training data path recorded in the model"):
        training_spec(gone)


def test_a_file_whose_name_holds_glob_characters_is_that_file(three_days, tmp_path):
    path = write(three_days, tmp_path / "uk[1].nc")  # a glob for uk1.nc, which is absent
    data = gridded_training_data(config(mine(str(path))))
    assert data.tensor.shape == (72, 1, 33, 49)
    assert training_spec(data.metadata).path == str(path)


# ------------------------------------------------------------------ the output folder


@pytest.fixture
def trained(three_days, tmp_path):
    """A tiny run of one's own file into tmp_path/run: (its config, the folder)."""
    raw = mine(write(three_days, tmp_path / "uk.nc"))
    out = tmp_path / "run"
    run_training(config(raw), out, progress=False)
    return raw, out


def test_a_folder_holding_a_model_is_refused_without_resume_or_overwrite(trained, capsys):
    raw, out = trained
    before = (out / "model.pt").read_bytes()
    with pytest.raises(FileExistsError, match="holds a trained model already"):
        run_training(config(raw), out, progress=False)
    assert (out / "model.pt").read_bytes() == before
    path = out.parent / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "pass --resume to continue its training or --overwrite" in capsys.readouterr().err
    (out / "gaussian.pt").write_bytes(b"made for the old model")
    args = ["train", str(path), "--out", str(out), "--no-progress", "--set", "optim.seed=1"]
    assert main([*args, "--overwrite"]) == 0
    assert (out / "model.pt").read_bytes() != before and not (out / "gaussian.pt").exists()
    assert load_checkpoint(out / "model.pt")["config"]["optim"]["seed"] == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": {**TINY["model"], "width": 16}}, "model.width 8 -> 16"),
        ({"optim": {**TINY["optim"], "batch_size": 4}}, "optim.batch_size 2 -> 4"),
    ],
)
def test_resume_refuses_another_config_naming_the_keys(trained, change, named, capsys):
    raw, out = trained
    with pytest.raises(ValueError, match=named) as err:
        run_training(config({**raw, **change}), out, resume=True, progress=False)
    assert "\n" not in str(err.value) and "--overwrite" in str(err.value)
    path = out.parent / "cfg.yaml"
    path.write_text(yaml.safe_dump({**raw, **change}))
    assert main(["train", str(path), "--out", str(out), "--resume", "--no-progress"]) == 2
    captured = capsys.readouterr().err
    assert named in captured and "Traceback" not in captured


def test_resume_refuses_fewer_steps_than_done_and_leaves_the_folder_as_it_was(trained):
    raw, out = trained
    before = {name: (out / name).read_bytes() for name in sorted(os.listdir(out))}
    fewer = {**raw, "optim": {**TINY["optim"], "steps": 1}}
    with pytest.raises(ValueError, match=r"optim\.steps 1 is below the checkpoint's step 2"):
        run_training(config(fewer), out, resume=True, progress=False)
    assert {name: (out / name).read_bytes() for name in sorted(os.listdir(out))} == before


def test_resume_refuses_other_data_behind_the_same_path(trained, three_days):
    raw, out = trained
    celsius = three_days.copy()
    celsius["t2m"] = celsius["t2m"] - 273.15
    celsius["t2m"].attrs["units"] = "degC"
    write(celsius, Path(raw["data"]["path"]))
    with pytest.raises(ValueError, match=r"the training data's units \{'t2m': 'K'\} -> "):
        run_training(config(raw), out, resume=True, progress=False)


def test_resume_continues_with_more_steps_and_a_lower_rate(trained, caplog):
    raw, out = trained
    optim = {**TINY["optim"], "steps": 4, "lr": 5e-4}
    with caplog.at_level(logging.INFO, logger="hdm"):
        summary = run_training(config({**raw, "optim": optim}), out, resume=True, progress=False)
    assert summary["steps"] == 4
    assert f"resuming {out / 'checkpoint.pt'} at step 2 of 4" in caplog.text
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["metadata"]["resumed"] == [
        {"step": 2, "changed": {"optim.steps": [2, 4], "optim.lr": [1e-3, 5e-4]}}
    ]
    assert state["scheduler"]["base_lrs"] == [5e-4]
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["steps"] == 4


def test_resume_without_a_checkpoint_says_it_starts_at_step_0(three_days, tmp_path, caplog):
    raw = mine(write(three_days, tmp_path / "uk.nc"))
    with caplog.at_level(logging.WARNING, logger="hdm"):
        summary = run_training(config(raw), tmp_path / "new", resume=True, progress=False)
    assert summary["steps"] == 2 and "holds no checkpoint; training starts at step 0" in caplog.text


def test_the_loop_refuses_a_checkpoint_of_another_network(trained, three_days):
    """hdm.hilbert.training.train itself: a checkpoint of a wider network is one line naming
    the entry, not torch's size-mismatch traceback."""
    raw, out = trained
    cfg = config({**raw, "model": {**TINY["model"], "width": 16}})
    data = gridded_training_data(cfg)
    from hdm.pipelines.train import build_model

    model = build_model(cfg, data.grid, 1)
    with pytest.raises(ValueError, match=r"network\.width: 8 -> 16"):
        training.train(
            model, data.tensor, data.grid, cfg.optim, out / "checkpoint.pt", resume=True,
            progress=False,
        )  # fmt: skip


def test_a_failed_run_leaves_no_folder_and_no_config(three_days, tmp_path, monkeypatch):
    raw = mine(write(three_days, tmp_path / "uk.nc"))

    def diverge(self, objective, bar):
        raise training.TrainingDiverged("training diverged at step 1")

    monkeypatch.setattr(training._TrainingRun, "advance", diverge)
    with pytest.raises(training.TrainingDiverged):
        run_training(config(raw), tmp_path / "a" / "b", progress=False)
    assert not (tmp_path / "a").exists()  # both folders it made
    kept = tmp_path / "kept"  # one's own folder, one's config in it: left as it was
    kept.mkdir()
    (kept / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(training.TrainingDiverged):
        run_training(config(raw), kept, progress=False)
    assert os.listdir(kept) == ["config.yaml"]
    assert yaml.safe_load((kept / "config.yaml").read_text()) == raw


def test_resume_and_overwrite_together_are_refused(trained):
    raw, out = trained
    with pytest.raises(ValueError, match="give one of them"):
        run_training(config(raw), out, resume=True, overwrite=True, progress=False)
    assert torch.load(out / "model.pt", weights_only=True)["exported_from_step"] == 2


def test_an_ensemble_folder_is_refused_resumed_and_overwritten(three_days, tmp_path):
    raw = {**mine(write(three_days, tmp_path / "uk.nc")), "model": {**TINY["model"], "ensemble": 2}}
    out = tmp_path / "ens"
    run_training(config(raw), out, progress=False)
    with pytest.raises(FileExistsError, match="holds a trained model already"):
        run_training(config(raw), out, progress=False)
    longer = {**raw, "optim": {**TINY["optim"], "steps": 3}}
    assert run_training(config(longer), out, resume=True, progress=False)["steps"] == 3
    for k in (0, 1):
        state = load_checkpoint(out / "networks" / str(k) / "checkpoint.pt")
        assert state["step"] == 3 and state["metadata"]["resumed"][0]["step"] == 2
    wider = {**raw, "model": {**raw["model"], "width": 16}}
    with pytest.raises(ValueError, match=r"model\.width 8 -> 16"):
        run_training(config(wider), out, resume=True, progress=False)
    run_training(config(wider), out, overwrite=True, progress=False)
    assert load_checkpoint(out / "model.pt")["config"]["model"]["width"] == 16
    assert load_checkpoint(out / "networks" / "1" / "checkpoint.pt")["step"] == 2
