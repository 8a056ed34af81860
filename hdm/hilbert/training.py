"""Training a denoiser: AdamW, gradient clipping, EMA, a warm-up + cosine learning-rate
schedule, atomic checkpoints and bit-exact resume.

Checkpoints (:mod:`hdm.hilbert.checkpoints`) are written atomically every
``checkpoint_every`` steps. Resuming restores the model, EMA, optimiser, scheduler and
both generators, so a run resumed at step k ends bit-identical to one that was never
interrupted (same machine, same thread count).

If a loss or gradient becomes non-finite, training stops with
:class:`TrainingDiverged`; nothing is written for that step, so the last checkpoint on
disk is the last good one.

Data parallelism (``torchrun``, see :mod:`hdm.hilbert.distributed`): with W processes,
``batch_size`` B is the batch of *each* process and one step sees the global batch of
G = B·W samples. Every process draws the G indices, the G times and the G noise fields
from the shared seeded generators exactly as one process with batch G would, and keeps
its slice r·B … (r+1)·B − 1. Its loss is the mean over that slice, and
DistributedDataParallel averages the gradients over the processes during ``backward``:

    (1/W) Σ_r ∇ (1/B) Σ_{i ∈ slice r} ℓ_i  =  ∇ (1/G) Σ_{i=1}^{G} ℓ_i,

the gradient of one process with batch G. So W processes with batch B follow the run of
one process with batch B·W (to float rounding), and a checkpoint of one resumes in the
other. Process 0 alone writes checkpoints and draws the progress bar; the others wait
at a barrier, so no process reads a half-written checkpoint.

On CUDA the network runs under bfloat16 autocast (``OptimConfig.amp``); the spectral
convolutions stay in float32 (cuFFT has no bfloat16 transform, and autocast leaves FFT
inputs as they come). On the CPU nothing changes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from neuralop.layers.spectral_convolution import SpectralConv
from torch import nn
from tqdm.auto import tqdm

from hdm._version import __version__
from hdm.hilbert.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    load_checkpoint,
    save_checkpoint,
)
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.distributed import DistributedContext, current_context
from hdm.hilbert.grids import Grid
from hdm.hilbert.losses import loss_given_noise
from hdm.hilbert.process import ForwardProcess


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became non-finite."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings (all plain values; saved in every checkpoint).

    steps: optimiser steps. batch_size: curves/fields per step and process (the global
    batch is batch_size × the number of processes under torchrun). lr: peak learning rate of
    AdamW; warmup_steps: linear warm-up; then cosine decay to lr·min_lr_ratio.
    weight_decay: AdamW's decoupled decay. grad_clip: max global gradient norm.
    ema_decay: exponential moving average of the weights used for sampling.
    checkpoint_every: steps between checkpoints (and always at the end). seed: seeds
    the data order, the times and the noise. amp: bfloat16 autocast of the network on
    CUDA (ignored on the CPU).
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0
    amp: bool = True


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak learning rate at ``step`` (warm-up, then cosine)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine


class EMA:
    """θ_ema ← d θ_ema + (1 − d) θ after each step, with the warm-up d_k = min(d, (1+k)/(10+k))."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p, 1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)


def draw_time_and_noise(
    process: ForwardProcess,
    n: int,
    channels: int,
    grid: Grid,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """t ~ U[t_min, t_max], shape (n,) float64, then ξ ~ N(0, Q), shape (n, channels,
    *grid.shape): drawn on the CPU from ``generator`` in the order of
    :func:`~hdm.hilbert.losses.denoising_loss`, so the same generator gives the same draws."""
    t = process.sample_times(n, generator)
    xi = process.noise(n, channels, grid, generator, dtype=dtype)
    return t, xi


class DenoisingObjective(nn.Module):
    """The denoising loss of :func:`~hdm.hilbert.losses.denoising_loss` for given times
    and noise,

        L = mean_{b, c} Σ_i w_i (F_θ(α_t x0 + σ_t ξ, t) − F*(x0, ξ, t))_i² / Σ_i w_i,

    x0, ξ: (batch, C, *grid.shape), t: (batch,). A module, because DistributedDataParallel
    synchronises the gradients of what runs through its ``forward``: the denoiser's own
    ``forward`` is the sampling-time D(x, t), not the loss.
    """

    def __init__(self, denoiser: PreconditionedDenoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(
        self, x0: torch.Tensor, t: torch.Tensor, xi: torch.Tensor, grid: Grid
    ) -> torch.Tensor:
        return loss_given_noise(self.denoiser, x0, t, xi, grid)


@contextlib.contextmanager
def spectral_layers_in_float32(model: nn.Module) -> Iterator[None]:
    """Within the block, every ``SpectralConv`` of ``model`` receives float32 inputs.

    Under bfloat16 autocast the layers before a spectral convolution return bfloat16, which
    ``torch.fft`` rejects on CUDA and autocast does not cast up (FFTs are on none of its
    CUDA lists); the transforms and the complex multipliers then run in float32.
    """

    def to_float32(module: nn.Module, args: tuple) -> tuple:
        return tuple(
            a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args
        )

    handles = [
        m.register_forward_pre_hook(to_float32)
        for m in model.modules()
        if isinstance(m, SpectralConv)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    final_loss: float
    wall_time_s: float
    denoiser: PreconditionedDenoiser


def train(
    denoiser: PreconditionedDenoiser,
    data: torch.Tensor,
    grid: Grid,
    cfg: OptimConfig,
    checkpoint_path: str | Path,
    *,
    resume: bool = False,
    extra: dict | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``denoiser`` on ``data`` (N, C, *grid.shape), normalised, finite.

    ``extra`` (JSON-like: config, normaliser, metadata) is stored in every checkpoint.
    With ``resume=True`` and an existing checkpoint, training continues from it.

    The model trains on the device of its parameters; ``data`` may stay on the CPU (each
    batch is moved). In a joined process group (torchrun, :mod:`hdm.hilbert.distributed`)
    call this on every process with the same arguments: the W processes train one model
    data-parallel with global batch ``cfg.batch_size`` × W (module docstring); process 0
    writes the checkpoints. The losses recorded are those of the global batch.
    """
    if data.ndim != 2 + grid.ndim or tuple(data.shape[2:]) != grid.shape:
        raise ValueError(f"data of shape {tuple(data.shape)} do not match grid {grid.shape}")
    if not torch.isfinite(data).all():
        bad = int((~torch.isfinite(data)).flatten(1).any(1).nonzero()[0, 0])
        raise ValueError(f"training data contain non-finite values in sample {bad}")
    checkpoint_path = Path(checkpoint_path)
    model = denoiser
    ctx: DistributedContext = current_context(device=next(model.parameters()).device)
    device = ctx.device
    global_batch = cfg.batch_size * ctx.world_size
    if ctx.is_distributed and global_batch > len(data):
        raise ValueError(
            f"the global batch ({cfg.batch_size} × {ctx.world_size} processes = "
            f"{global_batch}) is larger than the {len(data)} training samples"
        )
    local = slice(ctx.rank * cfg.batch_size, (ctx.rank + 1) * cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: lr_factor(k, cfg))
    ema = EMA(model, cfg.ema_decay)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, losses, wall = 0, [], 0.0
    order, cursor = torch.randperm(len(data), generator=data_gen), 0

    if resume and checkpoint_path.exists():  # every process reads the same checkpoint
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        data_gen.set_state(state["rng"]["data"])
        noise_gen.set_state(state["rng"]["noise"])
        order, cursor = state["rng"]["order"], int(state["rng"]["cursor"])
        step, losses, wall = int(state["step"]), list(state["losses"]), float(state["wall_time_s"])

    objective: nn.Module = DenoisingObjective(model)
    if ctx.is_distributed:  # averages the gradients over the processes in backward
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    amp = cfg.amp and device.type == "cuda"

    def payload() -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "hdm_version": __version__,
            "step": step,
            "wall_time_s": wall,
            "losses": losses,
            "model": model.state_dict(),  # the bare module: no DDP "module." prefix
            "ema": ema.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "data": data_gen.get_state(),
                "noise": noise_gen.get_state(),
                "order": order,
                "cursor": cursor,
            },
            "world_size": ctx.world_size,
            "network": dict(model.backbone.config),
            "process": model.process.to_dict(),
            "grid": grid.to_dict(),
            "parameterisation": model.parameterisation,
            "optim": asdict(cfg),
            **(extra or {}),
        }

    def checkpoint() -> None:
        if ctx.is_main:
            save_checkpoint(checkpoint_path, payload())
        ctx.barrier()  # nobody goes on (and may read it) before it is complete

    model.train()
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc="train",
        disable=not (progress and ctx.is_main),
        unit="step",
    )
    last_saved = None
    with contextlib.ExitStack() as stack:
        if amp:
            stack.enter_context(spectral_layers_in_float32(model))
        while step < cfg.steps:
            t0 = time.perf_counter()
            if cursor + global_batch > len(order):
                order, cursor = torch.randperm(len(data), generator=data_gen), 0
            batch = order[cursor : cursor + global_batch]
            cursor += global_batch
            # every process draws the whole global batch's times and noise, keeps its slice
            t, xi = draw_time_and_noise(
                model.process, len(batch), data.shape[1], grid, noise_gen, dtype=data.dtype
            )
            x0 = data[batch[local]].to(device, non_blocking=True)
            t, xi = t[local].to(device), xi[local].to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
                loss = objective(x0, t, xi, grid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            loss = ctx.all_mean(loss)  # the global batch's loss, the same on every process
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                bar.close()
                kept = (
                    f"the last good checkpoint {checkpoint_path} (step {last_saved}) is kept"
                    if last_saved is not None or checkpoint_path.exists()
                    else "no checkpoint had been written yet"
                )
                raise TrainingDiverged(
                    f"training diverged at step {step + 1}: loss={loss.item():.4g}, "
                    f"gradient norm={float(grad_norm):.4g}; {kept}. Lower the learning rate "
                    f"(optim.lr={cfg.lr}) or check the data normalisation."
                )
            optimizer.step()
            scheduler.step()
            ema.update(model, step)
            step += 1
            losses.append(loss.item())
            wall += time.perf_counter() - t0
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint()
                last_saved = step
            if on_step is not None:  # after the checkpoint, so it sees the committed state
                on_step(step, losses[-1])
    bar.close()
    if last_saved is None:  # resumed at the end already, or zero steps
        checkpoint()
    model.eval()
    ema.model.eval()
    return TrainResult(
        checkpoint=checkpoint_path,
        steps=step,
        final_loss=sum(losses[-50:]) / max(1, len(losses[-50:])),
        wall_time_s=wall,
        denoiser=ema.model,
    )
