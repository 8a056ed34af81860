"""``hdm model-stats MODEL``: the empirical model statistics of the v3 sampler.

The statistics l, s, b (:mod:`hdm.hilbert.solver_statistics`) are estimated once per model
on its training fields (read again through the config beside ``model.pt``, in its
normalisation; at most ``fields`` of them, evenly spaced in time), at ``levels`` noise
levels uniform in λ = −log ς over the process's range down to ς_min, and written to
``model_stats.pt`` beside the model with its sha256.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hdm.hilbert.checkpoints import file_sha256, save_model_statistics
from hdm.hilbert.gaussian import varsigma_range
from hdm.hilbert.sampling import VARSIGMA_MIN
from hdm.hilbert.solver_statistics import ModelStatistics, estimate_model_statistics
from hdm.pipelines.gaussian_stats import model_and_training_fields

log = logging.getLogger("hdm")

__all__ = ["ModelStatsConfig", "model_statistics"]


@dataclass(frozen=True)
class ModelStatsConfig:
    """``levels``: K levels of λ; ``fields``: at most this many training fields;
    ``fit_s``: fit s too (off: see the module doc of hdm.hilbert.solver_statistics);
    ``seed``: the noise and probe draws."""

    levels: int = 40
    fields: int = 128
    fit_s: bool = False
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.levels < 2 or self.fields < 2 or self.batch_size < 1:
            raise ValueError(
                f"model-stats needs at least 2 levels and 2 fields, got levels={self.levels}, "
                f"fields={self.fields}"
            )


def statistics_levels(process, k: int) -> np.ndarray:
    """K levels λ = −log ς, uniform from ς(t_max) down to max(ς_min, ς(t_min))."""
    low, high = varsigma_range(process)
    return np.linspace(-math.log(high), -math.log(max(low, VARSIGMA_MIN)), k)


def model_statistics(
    model: str | Path, config: ModelStatsConfig | None = None, progress: bool = True
) -> tuple[ModelStatistics, Path]:
    """Estimate and write the statistics of ``model`` (a model.pt or its folder); returns
    them and the path of ``model_stats.pt``."""
    cfg = config or ModelStatsConfig()
    path, denoiser, grid, fields = model_and_training_fields(model)
    pick = np.unique(np.linspace(0, fields.shape[0] - 1, min(cfg.fields, fields.shape[0])).round())
    chosen = fields[torch.as_tensor(pick.astype(np.int64))]
    generator = torch.Generator().manual_seed(cfg.seed)
    stats = estimate_model_statistics(
        denoiser,
        chosen,
        grid,
        statistics_levels(denoiser.process, cfg.levels),
        generator,
        batch_size=cfg.batch_size,
        progress=progress,
        fit_s=cfg.fit_s,
    )
    stats.model_sha256 = file_sha256(path)
    out = save_model_statistics(path, stats)
    log.info("wrote %s: %d levels from %d fields", out, cfg.levels, stats.n_fields)
    return stats, out
