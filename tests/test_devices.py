"""``--device``: where sampling runs (the CPU here; CUDA is checked by
benchmarks/gpu_check.py on a GPU machine)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.shipped import shipped_path
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale
from hdm.hilbert.devices import (
    DeviceError,
    check_device_spec,
    denoiser_device,
    resolve_device,
    seeded_generator,
)
from hdm.pipelines.cli import main
from hdm.pipelines.cluster import task_device

UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")


@pytest.fixture(scope="module")
def coarse():
    truth = open_fields(UK_FILE, "t2m", time=slice("2019-03-25T00", "2019-03-25T00"))["t2m"]
    return coarse_grain(truth.load(), 4)


def test_explicit_cpu_and_auto_resolve_to_what_torch_has():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected and resolve_device(None) == expected


@NO_CUDA
def test_an_unavailable_cuda_device_names_what_torch_sees():
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=r"is not available: torch .* sees no CUDA device"):
            resolve_device(spec)


def test_unknown_devices_are_refused_by_name():
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="unsupported device 'mps'"):
        resolve_device("mps")
    assert check_device_spec("CUDA:3") == "cuda:3"  # a config may name a GPU of another node
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda or cuda:K"):
        EnsembleConfig(device="gpu")


def test_the_generator_places_the_draws_and_the_model_is_found(tiny_model):
    gen = seeded_generator(3, "cpu")
    assert gen.device == torch.device("cpu") and gen.initial_seed() == 3
    assert denoiser_device(tiny_model.denoiser) == torch.device("cpu")


def test_downscaling_on_auto_equals_cpu_on_a_cpu_machine(tiny_model, coarse):
    if torch.cuda.is_available():
        pytest.skip("auto is CUDA here")
    runs = [
        downscale(tiny_model, coarse, members=2, steps=3, device=d, progress=False)
        for d in ("cpu", "auto")
    ]
    assert runs[0].attrs["device"] == runs[1].attrs["device"] == "cpu"
    np.testing.assert_array_equal(runs[0]["t2m"].values, runs[1]["t2m"].values)


def test_a_batch_task_keeps_its_device_outside_a_dask_worker():
    assert task_device("cpu") == "cpu" and task_device("auto") == "auto"


@NO_CUDA
def test_cli_cuda_without_a_gpu_is_one_line_and_exit_code_2(tiny_model, tmp_path, capsys):
    out = tmp_path / "x.zarr"
    args = ["--truth", str(UK_FILE), "--factor", "4", "--device", "cuda", "--out", str(out)]
    times = ["--times", "2019-03-25T00", "2019-03-25T00"]
    assert main(["downscale", tiny_model.path, *args, *times]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("hdm: error")]
    assert len(errors) == 1 and "sees no CUDA device" in errors[0] and not out.exists()
    model = str(shipped_path("checkpoints/quadratic") / "model.pt")
    sample = ["sample", model, "--n", "2", "--steps", "2", "--device", "cuda:0"]
    assert main([*sample, "--out", str(tmp_path / "s.nc")]) == 2
    assert "device 'cuda:0' is not available" in capsys.readouterr().err


def test_hdm_sample_records_its_device_and_repeats_on_it(tmp_path):
    folder = tmp_path / "quadratic"
    shutil.copytree(shipped_path("checkpoints/quadratic"), folder)
    run = ["sample", str(folder / "model.pt"), "--n", "4", "--steps", "3", "--no-progress"]
    assert main([*run, "--device", "cpu", "--out", str(tmp_path / "a.nc")]) == 0
    assert main([*run, "--out", str(tmp_path / "b.nc")]) == 0
    a, b = xr.open_dataset(tmp_path / "a.nc"), xr.open_dataset(tmp_path / "b.nc")
    assert a.attrs["device"] == "cpu"
    np.testing.assert_array_equal(a["y"].values, b["y"].values)
