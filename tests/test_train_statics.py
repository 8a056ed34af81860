"""A prior with static inputs (land fraction, orography): trained, stored, loaded, refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hdm.domains.statics import StaticSource, StaticSourceError, static_field
from hdm.downscaling.prior import load_prior
from hdm.hilbert.checkpoints import load_checkpoint
from hdm.hilbert.grids import LatLonGrid
from hdm.pipelines.config import ConfigError, train_config_from_dict
from hdm.pipelines.train import run_training

SMALL = {
    "name": "uk_statics",
    "data": {"dataset": "uk_t2m"},
    "noise": {"kind": "spectral", "kernel": "matern", "lengthscale": 1.0},
    "model": {"width": 8, "n_modes": 8, "n_layers": 1, "time_dim": 16},
    "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
}


@pytest.fixture(scope="module")
def statics_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("uk_statics")
    cfg = train_config_from_dict({**SMALL, "statics": ["land_fraction", "orography"]})
    run_training(cfg, out, progress=False)
    return out / "model.pt"


def _weighted_stats(field: np.ndarray, grid: LatLonGrid) -> tuple[float, float]:
    w = grid.weights() / grid.weights().sum()
    mean = float((field * w).sum())
    return mean, float(np.sqrt((((field - mean) ** 2) * w).sum()))


def test_the_checkpoint_records_the_sources_and_their_training_grid_normalisation(
    statics_model,
):
    payload = load_checkpoint(statics_model)
    record = payload["statics"]
    assert record["names"] == ["land_fraction", "orography"]
    assert payload["network"]["static_channels"] == 2
    assert all(len(h) == 64 for h in record["sha256"])
    prior = load_prior(statics_model)
    lat, lon = prior.grid.coords()
    for k, name in enumerate(record["names"]):
        mean, std = _weighted_stats(static_field(name, lat, lon), prior.grid)
        assert record["mean"][k] == pytest.approx(mean, rel=1e-9)
        assert record["std"][k] == pytest.approx(std, rel=1e-9)
    # the land is a real share of the British Isles box, the orography real heights
    assert 0.1 < record["mean"][0] < 0.6 and 20 < record["mean"][1] < 400


def test_the_loaded_prior_feeds_its_statics_on_any_grid(statics_model):
    prior = load_prior(statics_model)
    finer = prior.grid.refined(2)
    x = torch.zeros(1, 1, *finer.shape)
    t = torch.full((1,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        out = prior.denoiser(x, t, finer)
    assert out.shape == x.shape and torch.isfinite(out).all()
    fields = prior.denoiser.statics(finer)
    assert fields.shape == (2, *finer.shape)
    # normalised with the TRAINING grid's statistics, not refitted on the finer grid
    lat, lon = finer.coords()
    raw = static_field("orography", lat, lon)
    rec = load_checkpoint(statics_model)["statics"]
    expected = (raw - rec["mean"][1]) / rec["std"][1]
    np.testing.assert_allclose(fields[1].double().numpy(), expected, rtol=1e-5, atol=1e-5)
    # and the network reads them: other static fields give another output
    prior.denoiser.statics._cache[finer] = torch.zeros(2, *finer.shape, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(prior.denoiser(x, t, finer), out)


def test_a_changed_static_source_file_is_refused(statics_model, tmp_path):
    """A model trained on one orography file must not silently read another."""
    copy = tmp_path / "model"
    copy.mkdir()
    shutil.copy(statics_model, copy / "model.pt")
    payload = torch.load(copy / "model.pt", weights_only=True)
    payload["statics"]["sha256"][1] = "0" * 64
    torch.save(payload, copy / "model.pt")
    with pytest.raises(StaticSourceError, match=r"static input 'orography' from .*HSURF"):
        load_prior(copy / "model.pt")


def test_unknown_statics_are_named_in_the_config():
    with pytest.raises(ConfigError, match=r"unknown static 'orograph'.*did you mean 'orography'"):
        train_config_from_dict({**SMALL, "statics": ["orograph"]})
    with pytest.raises(ConfigError, match="named more than once"):
        train_config_from_dict({**SMALL, "statics": ["orography", "orography"]})
    with pytest.raises(ConfigError, match=r"static source .h.: units must be one of"):
        train_config_from_dict({**SMALL, "statics": [{"name": "h", "kind": "file"}]})
    own = StaticSource("h", "file", "/x.nc", "HSURF", units="m")
    cfg = train_config_from_dict({**SMALL, "statics": ["latitude", own.to_dict()]})
    assert cfg.statics[1]["variable"] == "HSURF"
