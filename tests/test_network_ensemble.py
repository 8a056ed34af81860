"""A prior of K networks trained with K seeds (model.ensemble): trained, stored, routed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdm.conditioning.ensembles import draw_members
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.downscaling.core import downscale
from hdm.downscaling.prior import load_prior
from hdm.hilbert.checkpoints import CheckpointError, export_ensemble, load_checkpoint
from hdm.hilbert.denoisers import network_count
from hdm.hilbert.grids import LatLonGrid
from hdm.hilbert.networks import NetworkEnsemble, TimeConditionedFNO
from hdm.hilbert.sampling import make_sampler
from hdm.pipelines.config import ConfigError, train_config_from_dict
from hdm.pipelines.train import ENSEMBLE_DIR, run_training

SMALL = {
    "name": "uk_ensemble",
    "data": {"dataset": "uk_t2m"},
    "noise": {"kind": "spectral", "kernel": "matern", "lengthscale": 1.0},
    "model": {"width": 8, "n_modes": 8, "n_layers": 1, "time_dim": 16, "ensemble": 2},
    "statics": ["land_fraction"],
    "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2, "seed": 5},
}


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("uk_ensemble")
    summary = run_training(train_config_from_dict(SMALL), out, progress=False)
    return out, summary


def test_each_network_is_a_run_of_its_own_seed_and_the_model_holds_all(ensemble_run):
    out, summary = ensemble_run
    payload = load_checkpoint(out / "model.pt")
    assert payload["network"]["ensemble"] == 2
    assert [m["seed"] for m in payload["ensemble_members"]] == [5, 6]
    assert [e["seed"] for e in summary["ensemble"]] == [5, 6]
    assert payload["config"]["model"]["ensemble"] == 2  # the run's config, not network 0's
    networks = [load_checkpoint(out / ENSEMBLE_DIR / str(k) / "model.pt") for k in (0, 1)]
    for k, network in enumerate(networks):
        assert network["optim"]["seed"] == 5 + k
        for name, value in network["ema"].items():
            key = f"backbone.members.{k}.{name.removeprefix('backbone.')}"
            assert torch.equal(payload["ema"][key], value)
    # different seeds: different networks
    name = next(iter(networks[0]["ema"]))
    assert not torch.equal(networks[0]["ema"][name], networks[1]["ema"][name])


@pytest.mark.parametrize("batch", [4, 5])  # vectorised over the networks / one by one
def test_row_b_goes_through_network_b_mod_k_with_its_gradient(ensemble_run, batch):
    out, _ = ensemble_run
    prior = load_prior(out / "model.pt")
    singles = [load_prior(out / ENSEMBLE_DIR / str(k) / "model.pt") for k in (0, 1)]
    assert network_count(prior.denoiser) == 2 and network_count(singles[0].denoiser) == 1
    grid = prior.grid
    x = torch.randn(batch, 1, *grid.shape, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    t = torch.linspace(0.2, 0.8, batch)
    y = prior.denoiser(x, t, grid)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    for k, single in enumerate(singles):
        xk = x.detach()[k::2].clone().requires_grad_(True)
        yk = single.denoiser(xk, t[k::2], grid)
        (gk,) = torch.autograd.grad(yk.square().sum(), xk)
        torch.testing.assert_close(y.detach()[k::2], yk.detach())
        torch.testing.assert_close(grad[k::2], gk)


def test_new_weights_reach_the_vectorised_call():
    nets = [TimeConditionedFNO(dim=2, width=8, n_modes=4, n_layers=1, time_dim=8) for _ in "ab"]
    ensemble = NetworkEnsemble(nets)
    grid = LatLonGrid.regular((50, 58), (-10, 2), (17, 25))
    x, t = torch.randn(4, 1, *grid.shape), torch.full((4,), 0.5)
    with torch.no_grad():
        before = ensemble(x, t, grid)
        nets[1].project.fcs[-1].bias.add_(1.0)  # in place: the stacked copy is stale
        after = ensemble(x, t, grid)
    torch.testing.assert_close(after[0::2], before[0::2])
    torch.testing.assert_close(after[1::2], before[1::2] + 1.0)


def test_the_chunk_budget_reaches_every_network_and_keeps_the_output():
    nets = [TimeConditionedFNO(dim=2, width=8, n_modes=4, n_layers=1, time_dim=8) for _ in "ab"]
    ensemble = NetworkEnsemble(nets)
    grid = LatLonGrid.regular((50, 58), (-10, 2), (17, 25))
    x, t = torch.randn(8, 1, *grid.shape), torch.linspace(0.1, 0.9, 8)
    with torch.no_grad():
        whole = ensemble(x, t, grid)
        ensemble.cpu_chunk_bytes = 1  # one field per chunk in every network
        assert [n.cpu_chunk_bytes for n in [*nets, *ensemble._template]] == [1, 1, 1]
        assert ensemble.chunk_size(x, grid) == 2  # one row per network, rounded to K
        chunked = ensemble(x, t, grid)
    torch.testing.assert_close(chunked, whole)


def test_chunks_start_at_multiples_of_k():
    nets = [TimeConditionedFNO(dim=2, width=8, n_modes=4, n_layers=1, time_dim=8) for _ in "abc"]
    ensemble = NetworkEnsemble(nets)
    grid = LatLonGrid.regular((50, 58), (-10, 2), (33, 49))
    x = torch.zeros(16, 1, *grid.shape)
    for budget in (1, 10**5, 10**9):
        size = ensemble.chunk_size(x, grid, budget)
        assert size % 3 == 0 or size == 16
        assert size >= 3


def test_members_do_not_depend_on_the_chunk_when_it_rounds_to_k(ensemble_run):
    out, _ = ensemble_run
    prior = load_prior(out / "model.pt")
    sampler = make_sampler("heun", 3)
    kwargs = {"seed": 1, "key": "t", "bound": None}
    one, _ = draw_members(prior.denoiser, sampler, prior.grid, 4, batch_size=1, **kwargs)
    two, _ = draw_members(prior.denoiser, sampler, prior.grid, 4, batch_size=2, **kwargs)
    assert one.shape == (4, 1, *prior.grid.shape) and torch.isfinite(one).all()
    torch.testing.assert_close(one, two)  # batch 1 is rounded up to K = 2


def test_networks_of_different_recipes_are_refused(ensemble_run, tmp_path):
    out, _ = ensemble_run
    other = tmp_path / "other"
    cfg = {**SMALL, "model": {**SMALL["model"], "width": 4, "ensemble": 1}}
    run_training(train_config_from_dict(cfg), other, progress=False)
    with pytest.raises(CheckpointError, match="'network'"):
        export_ensemble(
            [out / ENSEMBLE_DIR / "0" / "model.pt", other / "model.pt"], tmp_path / "m.pt"
        )
    with pytest.raises(CheckpointError, match="ensemble already"):
        export_ensemble([out / "model.pt", other / "model.pt"], tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_an_ensemble_of_no_networks_is_named_in_the_config():
    with pytest.raises(ConfigError, match=r"model\.ensemble"):
        train_config_from_dict({**SMALL, "model": {**SMALL["model"], "ensemble": 0}})


def test_a_downscaled_ensemble_records_its_networks_and_member_m_is_network_m_mod_k(
    ensemble_run,
):
    out, _ = ensemble_run
    path = GRIDDED_DATASETS["uk_t2m"].resolved_path()
    truth = open_fields(path, "t2m", time=slice("2019-03-25T00", "2019-03-25T00"))["t2m"].load()
    run = {"members": 4, "steps": 2, "guidance": "mmps", "runaway_bound": None, "progress": False}
    ds = downscale(out / "model.pt", coarse=coarse_grain(truth, 4), **run)
    assert ds.attrs["networks"] == 2
    assert ds["t2m"].shape == (4, 1, 33, 49) and np.isfinite(ds["t2m"]).all()
    # network 0 alone with the same seed draws the same noise: the ensemble's members 0
    # and 2 are its members 0 and 2; members 1 and 3 are network 1's
    single = downscale(out / ENSEMBLE_DIR / "0" / "model.pt", coarse=coarse_grain(truth, 4), **run)
    assert single.attrs["networks"] == 1
    close = np.isclose(ds["t2m"].values, single["t2m"].values, rtol=1e-5, atol=1e-3)
    same = close.all(axis=(1, 2, 3))
    assert same.tolist() == [True, False, True, False]
