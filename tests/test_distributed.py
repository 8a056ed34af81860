"""Data-parallel training: 2 gloo processes with batch B follow 1 process with batch 2B,
and their checkpoints resume in a single process."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hdm.hilbert.checkpoints import load_checkpoint
from hdm.hilbert.covariance import SpectralCovariance
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.distributed import (
    DistributedContext,
    current_context,
    distributed_session,
    launched_by_torchrun,
)
from hdm.hilbert.grids import IntervalGrid
from hdm.hilbert.losses import denoising_loss
from hdm.hilbert.networks import TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP
from hdm.hilbert.training import (
    DenoisingObjective,
    OptimConfig,
    draw_time_and_noise,
    spectral_layers_in_float32,
    train,
)

B = 4  # the batch of each of the 2 processes
CFG = OptimConfig(
    steps=3,
    batch_size=B,
    lr=3e-3,
    warmup_steps=1,
    min_lr_ratio=1.0,  # a constant rate after warm-up: the same schedule for 3 and 5 steps
    checkpoint_every=3,
    ema_decay=0.9,
    seed=3,
)


def tiny_setup():
    """A 1-D TimeConditionedFNO denoiser (width 8, 4 modes) and 24 curves on 16 points."""
    torch.manual_seed(0)
    backbone = TimeConditionedFNO(dim=1, width=8, n_modes=4, n_layers=2, time_dim=16)
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.3, nu=1.5))
    grid = IntervalGrid(-1, 1, 16)
    data = torch.randn(24, 1, 16, generator=torch.Generator().manual_seed(5))
    return PreconditionedDenoiser(backbone, process, "v"), grid, data


def _train_on_rank(rank: int, world_size: int, store: str, checkpoint: str) -> None:
    """One of the spawned processes: join the gloo group through a file store, train."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        ctx = current_context()
        assert (ctx.rank, ctx.world_size, ctx.backend) == (rank, world_size, "gloo")
        model, grid, data = tiny_setup()
        train(model, data, grid, CFG, checkpoint, progress=False)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """The checkpoint of 3 steps by 2 gloo processes with batch B each."""
    tmp = tmp_path_factory.mktemp("ddp")
    checkpoint = tmp / "ddp.pt"
    mp.spawn(_train_on_rank, args=(2, str(tmp / "store"), str(checkpoint)), nprocs=2, join=True)
    return checkpoint


def test_objective_draws_and_loss_equal_denoising_loss():
    model, grid, data = tiny_setup()
    x0 = data[:5]
    gen = torch.Generator().manual_seed(7)
    t, xi = draw_time_and_noise(model.process, 5, 1, grid, gen)
    assert t.shape == (5,) and xi.shape == (5, 1, 16)
    ours = DenoisingObjective(model)(x0, t, xi, grid)
    reference = denoising_loss(model, x0, grid, torch.Generator().manual_seed(7))
    assert torch.isfinite(ours) and torch.equal(ours, reference)  # bit-identical


def test_two_processes_equal_one_process_with_double_batch(two_process_run, tmp_path):
    initial, _, _ = tiny_setup()
    model, grid, data = tiny_setup()
    train(model, data, grid, replace(CFG, batch_size=2 * B), tmp_path / "one.pt", progress=False)
    one, two = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(two_process_run)
    assert two["world_size"] == 2 and one["world_size"] == 1 and two["step"] == 3
    assert set(two["model"]) == set(one["model"]) == set(initial.state_dict())  # no "module."
    moved = 0.0
    for key, start in initial.state_dict().items():
        for part in ("model", "ema"):
            torch.testing.assert_close(two[part][key], one[part][key], atol=1e-6, rtol=1e-5)
        moved = max(moved, float((two["model"][key] - start).abs().max()))
    assert moved > 1e-3  # training changed the weights, so the equality is not vacuous
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert torch.equal(two["rng"]["order"], one["rng"]["order"])
    assert two["rng"]["cursor"] == one["rng"]["cursor"] == 3 * 2 * B


def test_two_process_checkpoint_resumes_in_one_process(two_process_run, tmp_path):
    longer = replace(CFG, batch_size=2 * B, steps=5)
    model, grid, data = tiny_setup()
    straight = train(model, data, grid, longer, tmp_path / "straight.pt", progress=False)
    resumed_path = tmp_path / "resumed.pt"
    resumed_path.write_bytes(two_process_run.read_bytes())
    model, grid, data = tiny_setup()
    resumed = train(model, data, grid, longer, resumed_path, resume=True, progress=False)
    assert resumed.steps == straight.steps == 5
    a, b = load_checkpoint(tmp_path / "straight.pt"), load_checkpoint(resumed_path)
    assert b["world_size"] == 1 and len(b["losses"]) == 5
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], atol=1e-6, rtol=1e-5)


def test_single_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched_by_torchrun()
    assert launched_by_torchrun({"WORLD_SIZE": "2", "RANK": "1"})
    with distributed_session() as ctx:
        assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main) == (0, 1, None, True)
        ctx.barrier()  # a no-op with one process
        assert float(ctx.all_mean(torch.tensor(2.5))) == 2.5
    assert not dist.is_initialized()
    assert current_context() == DistributedContext()


def test_spectral_layers_get_float32_under_bfloat16_autocast():
    """The mixed-precision path (CUDA in training), exercised with CPU autocast."""
    from neuralop.layers.spectral_convolution import SpectralConv

    model, grid, data = tiny_setup()
    spectral = [m for m in model.modules() if isinstance(m, SpectralConv)]
    t, xi = draw_time_and_noise(model.process, 4, 1, grid, torch.Generator().manual_seed(1))
    seen = []

    def record(module, args):
        seen.append(args[0].dtype)

    for cast in (False, True):
        with contextlib.ExitStack() as stack:
            if cast:
                stack.enter_context(spectral_layers_in_float32(model))
            handles = [m.register_forward_pre_hook(record) for m in spectral]  # after the cast
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = DenoisingObjective(model)(data[:4], t, xi, grid)
            for h in handles:
                h.remove()
    loss.backward()
    assert seen[0] == torch.bfloat16  # without the cast, the lifting hands over bfloat16
    assert seen[2:] == [torch.float32] * 2  # with it, every spectral layer gets float32
    assert torch.isfinite(loss)
    assert all(p.grad.dtype == p.dtype and p.grad.isfinite().all() for p in model.parameters())
    assert all(not m._forward_pre_hooks for m in spectral)  # the hooks are gone afterwards
