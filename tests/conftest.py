"""Shared fixtures for the tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


@pytest.fixture
def seeded() -> Callable[[int], torch.Generator]:
    """A factory of fresh CPU generators: ``seeded(0)`` twice gives two identical streams."""
    return lambda seed: torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A real (barely trained) UK t2m model: the pipelines, not its quality, are tested."""
    from hdm.downscaling.prior import load_prior
    from hdm.pipelines.config import train_config_from_dict
    from hdm.pipelines.train import run_training

    out = tmp_path_factory.mktemp("uk_tiny")
    cfg = train_config_from_dict(
        {
            "name": "uk_tiny",
            "data": {"dataset": "uk_t2m"},
            "noise": {"kind": "spectral", "kernel": "matern", "lengthscale": 1.0},
            "model": {"width": 8, "n_modes": 8, "n_layers": 1, "time_dim": 16},
            "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
        }
    )
    run_training(cfg, out, progress=False)
    return load_prior(out / "model.pt")


@pytest.fixture
def process_new_args(tiny_model, tmp_path) -> tuple:
    """(inbox, out_dir, the ``hdm process-new`` arguments): a daily config of the tiny
    model that coarse-grains each inbox file ×4 and simulates three stations."""
    inbox, outdir = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    config = tmp_path / "daily.yaml"
    config.write_text(
        f"checkpoint: {tiny_model.path}\n"
        "inputs: {truth: placeholder.nc, factor: 4}\n"
        "stations: {simulate: [UKM00003808,UKM00003882,UKM00003354]}\n"
        "ensemble: {members: 2, steps: 4}\n"
        "batch: {scheduler: synchronous, chunk_size: 1, torch_threads: 1}\n"
        "output: {plots: false}\n"
    )
    args = ["process-new", "--config", str(config), "--inbox", str(inbox), "--out-dir", str(outdir)]
    return inbox, outdir, args
