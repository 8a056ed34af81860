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
