"""A prior conditioned on its small-scale level (hdm.hilbert.regime): the level, the
coarse roughness it is estimated from, the conditioned network, training and sampling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.uk import UK
from hdm.conditioning.observations import ObservationError
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.downscaling.core import downscale
from hdm.downscaling.prior import load_prior
from hdm.hilbert.checkpoints import load_checkpoint
from hdm.hilbert.grids import LatLonGrid
from hdm.hilbert.networks import GridError, TimeConditionedFNO
from hdm.hilbert.regime import (
    LevelError,
    SmallScaleLevel,
    coarse_roughness,
    small_scale_level,
)
from hdm.pipelines.config import train_config_from_dict
from hdm.pipelines.sample import sample_fields
from hdm.pipelines.train import run_training

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "uk_t2m" / "model.pt"
GRID = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))


def _fields(n: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Smooth large-scale fields plus grid-scale noise of a per-field amplitude a (n,)."""
    g = torch.Generator().manual_seed(seed)
    lat = torch.linspace(0, 1, 33)[:, None]
    lon = torch.linspace(0, 1, 49)[None, :]
    phase = torch.rand(n, 1, 1, generator=g) * 6
    smooth = torch.sin(3 * lat + phase) * torch.cos(2 * lon + phase)
    amp = torch.exp(torch.linspace(-1.0, 1.0, n))
    noise = torch.randn(n, 33, 49, generator=g)
    return (smooth + 0.1 * amp[:, None, None] * noise)[:, None].double(), amp.numpy()


def test_the_level_moves_by_log_a_when_the_field_is_scaled_by_a():
    x, _ = _fields(3)
    for a in (0.5, 3.0):
        shift = small_scale_level(a * x, GRID, 4.0) - small_scale_level(x, GRID, 4.0)
        np.testing.assert_allclose(shift.numpy(), math.log(a), atol=1e-12)
    # a constant field has no small scales: the low-pass keeps it
    assert small_scale_level(torch.ones(1, 1, 33, 49).double(), GRID, 4.0).item() < -20


def test_the_coarse_roughness_of_a_two_cell_checkerboard_is_its_amplitude():
    # 2 x 2 blocks of +-1 average to 0: the residual is the field, RMS 1, log 0
    i, j = np.meshgrid(np.arange(8), np.arange(12), indexing="ij")
    board = np.where((i + j) % 2 == 0, 1.0, -1.0)
    lat = np.linspace(50, 58, 8)
    r = coarse_roughness(np.stack([board, 2.5 * board]), lat)
    np.testing.assert_allclose(r, [0.0, math.log(2.5)], atol=1e-12)
    with pytest.raises(LevelError, match="at least 4"):
        coarse_roughness(board[None, :3], lat[:3])


def test_the_fitted_estimator_follows_the_small_scale_amplitude_and_round_trips():
    x, amp = _fields(40)
    level = SmallScaleLevel.fit(x, GRID, 2.0, factors=(2, 4))
    assert level.factors == (2, 4)
    # the noise dominates the small scales at every amplitude: the level is log a + const,
    # and the coarse fields' finest scales carry the same noise (averaged): r follows it
    rho = small_scale_level(x, GRID, 2.0).numpy()
    assert np.corrcoef(rho, np.log(amp))[0, 1] > 0.99
    assert level.estimators[0].correlation > 0.95 and level.estimators[0].slope > 0.5
    assert SmallScaleLevel.from_dict(level.to_dict()) == level
    # the fit at a recorded factor is that factor's; between two, log-interpolated
    assert level.estimator_at(4.0) == level.estimators[1]
    mid = level.estimator_at(math.sqrt(8.0))
    expected = 0.5 * (level.estimators[0].slope + level.estimators[1].slope)
    assert mid.slope == pytest.approx(expected)
    with pytest.raises(LevelError, match="2 to 4 spacings"):
        level.estimator_at(8.0)


def test_the_condition_reaches_the_output_through_both_paths_and_chunks_agree():
    torch.manual_seed(0)
    net = TimeConditionedFNO(dim=2, width=8, n_modes=4, n_layers=1, time_dim=16, condition_inputs=1)
    x = torch.randn(4, 1, 33, 49)
    tau = torch.zeros(4)
    lo, hi = torch.full((4, 1), -1.0), torch.full((4, 1), 1.0)
    with torch.no_grad():
        # the lifting sees z as a constant field; the embedding path starts at zero
        assert not torch.allclose(net(x, tau, GRID, condition=lo), net(x, tau, GRID, condition=hi))
        assert torch.count_nonzero(net.condition.weight) == 0
        z = torch.tensor([[-1.0], [0.0], [0.5], [2.0]])
        whole = net(x, tau, GRID, condition=z)
        net.cpu_chunk_bytes = 1  # one field per chunk: each keeps its own z
        torch.testing.assert_close(net(x, tau, GRID, condition=z), whole)
        torch.testing.assert_close(net(x[2:3], tau[2:3], GRID, condition=z[2:3]), whole[2:3])
    with pytest.raises(GridError, match="condition value"):
        net(x, tau, GRID)


SMALL = {
    "name": "uk_level",
    "data": {"dataset": "uk_t2m", "train_end": "2019-03-05T23"},
    "noise": {"kind": "spectral", "kernel": "matern", "lengthscale": 1.0},
    "model": {
        "width": 8,
        "n_modes": 8,
        "n_layers": 1,
        "time_dim": 16,
        "small_scale_level": True,
    },
    "optim": {
        "steps": 2,
        "batch_size": 2,
        "warmup_steps": 1,
        "checkpoint_every": 2,
        "small_scale_sigma": 4,
    },
}


@pytest.fixture(scope="module")
def level_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("uk_level")
    run_training(train_config_from_dict(SMALL), out, progress=False)
    return out / "model.pt"


def test_the_checkpoint_records_the_level_and_the_prior_binds_it(level_model):
    payload = load_checkpoint(level_model)
    record = payload["regime"]
    assert record["sigma_cells"] == 4 and payload["network"]["condition_inputs"] == 1
    # ERA5 t2m over the UK: the coarse fields' finest scales follow the sub-cell level
    by_factor = {e["factor"]: e for e in record["estimators"]}
    assert set(by_factor) == {2, 3, 4, 5, 6, 7, 8}
    assert by_factor[4]["correlation"] > 0.8 and by_factor[4]["slope"] > 0
    prior = load_prior(level_model)
    bound = prior.denoiser.at_level(1.5)
    assert bound.level == 1.5 and prior.denoiser.level == 0.0
    assert bound.backbone is prior.denoiser.backbone


def test_downscaling_estimates_a_level_per_time_from_the_coarse_field(level_model):
    truth = open_fields(UK.resolved_path(), "t2m", time=["2019-03-27T00", "2019-03-27T12"])
    truth = truth["t2m"].load()
    # a two-step model: its members are not weather, only finite (no runaway bound)
    ds = downscale(
        level_model,
        coarse=coarse_grain(truth, 4),
        members=2,
        steps=2,
        runaway_bound="none",
        progress=False,
    )
    levels = np.array(json.loads(ds.attrs["small_scale_level"]))
    assert levels.shape == (2,) and np.isfinite(levels).all()
    assert ds.attrs["small_scale_level_source"] == "coarse field, x4"
    assert np.isfinite(ds["t2m"].values).all()
    # cells 16 training spacings wide lie outside the fitted factors: refused, named
    with pytest.raises(ObservationError, match=r"'t2m'.*2 to 8 spacings"):
        downscale(level_model, coarse=coarse_grain(truth, 16), members=2, steps=2, progress=False)


def test_unconditional_samples_record_their_level_and_other_models_refuse_one(level_model):
    ds = sample_fields(
        level_model, n=2, sampler="heun", steps=2, runaway_bound=None, small_scale_level=-1.5
    )
    assert ds.attrs["small_scale_level"] == -1.5 and np.isfinite(ds["t2m"].values).all()
    with pytest.raises(ValueError, match="not conditioned on a small-scale level"):
        sample_fields(SHIPPED, n=1, sampler="heun", steps=2, small_scale_level=1.0)


def test_the_level_is_refused_for_a_model_it_does_not_fit(tmp_path):
    cfg = {**SMALL, "data": {"dataset": "quadratic"}}
    with pytest.raises(ValueError, match="regional lat/lon FNO"):
        run_training(train_config_from_dict(cfg), tmp_path, progress=False)
