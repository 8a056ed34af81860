"""Training a denoiser: AdamW, gradient clipping, EMA, a warm-up + cosine learning-rate
schedule, atomic checkpoints and bit-exact resume.

Checkpoints (:mod:`hdm.hilbert.checkpoints`) are written atomically every
``checkpoint_every`` steps. Resuming restores the model, EMA, optimiser, scheduler and
both generators, so a run resumed at step k ends bit-identical to one that was never
interrupted (same machine, same thread count). A checkpoint of another network, Q, grid or
optimiser settings is refused, naming what differs; more steps, another learning rate
(the schedule's peak from the step resumed on), checkpoint interval or autocast are
taken (:data:`RESUMABLE_OPTIM`).

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
from hdm.hilbert.augmentation import draw_amplitudes, scale_small_scales
from hdm.hilbert.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    load_checkpoint,
    save_checkpoint,
)
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.distributed import DistributedContext, current_context
from hdm.hilbert.grids import Grid, LatLonGrid
from hdm.hilbert.losses import loss_given_noise
from hdm.hilbert.process import ForwardProcess


def _regime_record(model: nn.Module) -> dict:
    """``{"regime": ...}`` for a model conditioned on its small-scale level, else {}."""
    regime = getattr(model, "regime", None)
    return {} if regime is None else {"regime": regime.to_dict()}


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
    small_scale_amplitude: float = 1.0
    small_scale_sigma: float = 2.0

    def __post_init__(self) -> None:
        positive = "a positive integer"
        for key, ok, allowed in (
            ("steps", self.steps >= 1, positive),
            ("batch_size", self.batch_size >= 1, positive),
            ("checkpoint_every", self.checkpoint_every >= 1, positive),
            ("warmup_steps", self.warmup_steps >= 0, "a whole number >= 0"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("grad_clip", self.grad_clip > 0, "a positive number (.inf: no clipping)"),
            ("ema_decay", 0 <= self.ema_decay <= 1, "in [0, 1]"),
            ("seed", self.seed >= 0, "a whole number >= 0"),
        ):
            if not ok:  # NaN fails every comparison
                raise ValueError(f"optim.{key} must be {allowed}, got {getattr(self, key)!r}")
        if not self.small_scale_amplitude >= 1:
            raise ValueError(
                f"optim.small_scale_amplitude must be >= 1 (1: off), got "
                f"{self.small_scale_amplitude}"
            )
        if not self.small_scale_sigma > 0:
            raise ValueError(
                f"optim.small_scale_sigma must be positive, got {self.small_scale_sigma}"
            )


#: the :class:`OptimConfig` entries that may differ between a checkpoint and the run that
#: resumes it: how many steps in all (not fewer than the checkpoint's; the cosine decay then
#: runs to the new end), the learning rate (lowered after a divergence; the schedule's
#: peak from then on), when checkpoints are written and bfloat16 autocast (the device)
RESUMABLE_OPTIM = ("steps", "lr", "checkpoint_every", "amp")


def plain_values(value):
    """Tuples as lists, recursively: a description as a checkpoint stores it."""
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    return value


def resume_differences(state: dict, run_description: dict) -> list[str]:
    """``"KEY: OLD -> NEW"`` for each entry of ``run_description`` (``network``,
    ``process``, ``grid``, ``parameterisation``, ``optim``, ...) that a checkpoint's
    ``state`` records otherwise; of ``optim``, the entries given and not in
    :data:`RESUMABLE_OPTIM` are compared."""
    differences = []
    for key, new in run_description.items():
        old = state.get(key)
        if key == "optim" and isinstance(old, dict):
            old = {**asdict(OptimConfig()), **old}  # entries newer than the checkpoint: defaults
            new = {k: v for k, v in new.items() if k not in RESUMABLE_OPTIM}
            old = {k: old.get(k) for k in new}
        if isinstance(old, dict) and isinstance(new, dict):
            for k in sorted(set(old) | set(new), key=str):
                if plain_values(old.get(k)) != plain_values(new.get(k)):
                    differences.append(f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}")
        elif plain_values(old) != plain_values(new):
            differences.append(f"{key}: {old!r} -> {new!r}")
    return differences


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
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        xi: torch.Tensor,
        grid: Grid,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return loss_given_noise(self.denoiser, x0, t, xi, grid, condition)


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


def _check_training_data(data: torch.Tensor, grid: Grid) -> None:
    """Raise unless ``data`` is (N, C, *grid.shape) and finite (naming the first bad sample)."""
    if data.ndim != 2 + grid.ndim or tuple(data.shape[2:]) != grid.shape:
        raise ValueError(f"data of shape {tuple(data.shape)} do not match grid {grid.shape}")
    if not torch.isfinite(data).all():
        bad = int((~torch.isfinite(data)).flatten(1).any(1).nonzero()[0, 0])
        raise ValueError(f"training data contain non-finite values in sample {bad}")


class _TrainingRun:
    """One training run: everything a checkpoint restores, and the steps that advance it.

    The state is the model, its EMA, the optimiser and scheduler, the two generators
    (``data_gen``: the data order; ``noise_gen``: times and noise), the current data order
    and the cursor into it, the step, the losses (one per step, of the global batch) and
    the wall time spent in steps (s). With W processes, process r keeps the slice
    ``local`` = r·B … (r+1)·B − 1 of each global batch of G = B·W samples (module docstring).
    """

    def __init__(
        self,
        denoiser: PreconditionedDenoiser,
        data: torch.Tensor,
        grid: Grid,
        cfg: OptimConfig,
        checkpoint_path: Path,
        extra: dict | None,
    ):
        self.model, self.data, self.grid, self.cfg = denoiser, data, grid, cfg
        self.checkpoint_path, self.extra = checkpoint_path, extra
        self.ctx: DistributedContext = current_context(device=next(denoiser.parameters()).device)
        self.device = self.ctx.device
        self.global_batch = cfg.batch_size * self.ctx.world_size
        if self.ctx.is_distributed and self.global_batch > len(data):
            raise ValueError(
                f"the global batch ({cfg.batch_size} × {self.ctx.world_size} processes = "
                f"{self.global_batch}) is larger than the {len(data)} training samples"
            )
        if cfg.small_scale_amplitude > 1 and not isinstance(grid, LatLonGrid):
            raise ValueError(
                "optim.small_scale_amplitude scales the small scales of regional lat/lon "
                f"fields; the grid here is a {type(grid).__name__}"
            )
        rank = self.ctx.rank
        self.local = slice(rank * cfg.batch_size, (rank + 1) * cfg.batch_size)
        self.optimizer = torch.optim.AdamW(
            denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: lr_factor(k, cfg)
        )
        self.ema = EMA(denoiser, cfg.ema_decay)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step, self.losses, self.wall = 0, [], 0.0
        self.order, self.cursor = torch.randperm(len(data), generator=self.data_gen), 0
        self.last_saved: int | None = None  # the step of the last checkpoint of this run
        self.amp = cfg.amp and self.device.type == "cuda"

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's ``state`` (every process reads the same one)."""
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.data_gen.set_state(state["rng"]["data"])
        self.noise_gen.set_state(state["rng"]["noise"])
        self.order, self.cursor = state["rng"]["order"], int(state["rng"]["cursor"])
        self.step, self.losses = int(state["step"]), list(state["losses"])
        self.wall = float(state["wall_time_s"])
        old = state.get("optim", {})
        if (old.get("lr"), old.get("steps")) != (self.cfg.lr, self.cfg.steps):
            # a new peak rate or end: the schedule of this run from the step resumed on
            # (the scheduler's state holds the old peak; its lambda is this run's)
            for group in self.optimizer.param_groups:
                group["initial_lr"] = self.cfg.lr
                group["lr"] = self.cfg.lr * lr_factor(self.step, self.cfg)
            self.scheduler.base_lrs = [self.cfg.lr for _ in self.optimizer.param_groups]

    def check_resumable(self, state: dict) -> None:
        """A ValueError (one line) unless ``state`` is a checkpoint of this run: the same
        network, Q, schedule, grid, parameterisation and optimiser settings (but those of
        :data:`RESUMABLE_OPTIM`, and the batch of each process where the global batch
        stays: W processes resume as one), at a step not beyond ``cfg.steps``."""
        path = self.checkpoint_path
        model = self.model
        differences = resume_differences(
            state,
            {
                "network": dict(model.backbone.config),
                "process": model.process.to_dict(),
                "grid": self.grid.to_dict(),
                "parameterisation": model.parameterisation,
                "optim": {k: v for k, v in asdict(self.cfg).items() if k != "batch_size"},
            },
        )
        # the global batch must stay: W processes with batch B resume as 1 with B·W
        batch = state.get("optim", {}).get("batch_size", self.cfg.batch_size)
        was = int(batch) * int(state.get("world_size", 1))
        if was != self.global_batch:
            differences.append(
                f"the global batch (optim.batch_size × processes): {was} -> {self.global_batch}"
            )
        if differences:
            raise ValueError(
                f"{path} is not a checkpoint of this run: {'; '.join(differences)} (only "
                f"optim.{', optim.'.join(RESUMABLE_OPTIM)} and, keeping the global batch, "
                "optim.batch_size may change when resuming)"
            )
        if int(state["step"]) > self.cfg.steps:
            raise ValueError(
                f"{path} is at step {int(state['step'])}, beyond optim.steps {self.cfg.steps}: "
                "raise optim.steps to resume it"
            )

    def payload(self) -> dict:
        """The checkpoint: the state above, the model's description and ``extra``."""
        model = self.model
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "hdm_version": __version__,
            "step": self.step,
            "wall_time_s": self.wall,
            "losses": self.losses,
            "model": model.state_dict(),  # the bare module: no DDP "module." prefix
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "data": self.data_gen.get_state(),
                "noise": self.noise_gen.get_state(),
                "order": self.order,
                "cursor": self.cursor,
            },
            "world_size": self.ctx.world_size,
            "network": dict(model.backbone.config),
            "process": model.process.to_dict(),
            "grid": self.grid.to_dict(),
            "parameterisation": model.parameterisation,
            **_regime_record(model),
            "optim": asdict(self.cfg),
            **(self.extra or {}),
        }

    def save(self) -> None:
        """Process 0 writes the checkpoint; every process waits until it is complete."""
        if self.ctx.is_main:
            save_checkpoint(self.checkpoint_path, self.payload())
        self.ctx.barrier()  # nobody goes on (and may read it) before it is complete
        self.last_saved = self.step

    def objective(self) -> nn.Module:
        """The loss module; under DDP its ``backward`` averages the gradients over processes.

        Wrapped after :meth:`restore`: DistributedDataParallel broadcasts process 0's
        parameters when it is built.
        """
        objective: nn.Module = DenoisingObjective(self.model)
        if self.ctx.is_distributed:  # averages the gradients over the processes in backward
            device = self.device
            objective = torch.nn.parallel.DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None
            )
        return objective

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This process's slice of the next global batch: x0 (B, C, *grid.shape), t (B,),
        ξ (B, C, *grid.shape) and, for a model conditioned on the small-scale level, the
        level z of each (augmented) x0 (B, 1), else None; on the model's device.

        The G indices come from the data order (a fresh permutation from ``data_gen``
        when fewer than G are left); every process draws the G times and noise fields
        from ``noise_gen`` and keeps its slice, so all processes stay in step.
        """
        g = self.global_batch
        if self.cursor + g > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.data), generator=self.data_gen), 0
        batch = self.order[self.cursor : self.cursor + g]
        self.cursor += g
        # every process draws the whole global batch's times and noise, keeps its slice
        t, xi = draw_time_and_noise(
            self.model.process,
            len(batch),
            self.data.shape[1],
            self.grid,
            self.noise_gen,
            dtype=self.data.dtype,
        )
        x0 = self.data[batch[self.local]].to(self.device, non_blocking=True)
        t, xi = t[self.local].to(self.device), xi[self.local].to(self.device)
        if self.cfg.small_scale_amplitude > 1:  # drawn for the global batch, as t and ξ
            a = draw_amplitudes(len(batch), self.cfg.small_scale_amplitude, self.noise_gen)
            x0 = scale_small_scales(x0, a[self.local].to(self.device), self.cfg.small_scale_sigma)
        regime = getattr(self.model, "regime", None)
        condition = None if regime is None else regime.training_input(x0, self.grid)
        return x0, t, xi, condition

    def diverged(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> TrainingDiverged:
        """The error for a non-finite loss or gradient at the coming step."""
        path = self.checkpoint_path
        kept = (
            f"the last good checkpoint {path} (step {self.last_saved}) is kept"
            if self.last_saved is not None or path.exists()
            else "no checkpoint had been written yet"
        )
        return TrainingDiverged(
            f"training diverged at step {self.step + 1}: loss={loss.item():.4g}, "
            f"gradient norm={float(grad_norm):.4g}; {kept}. Lower the learning rate "
            f"(optim.lr={self.cfg.lr}) or check the data normalisation."
        )

    def advance(self, objective: nn.Module, bar: tqdm) -> None:
        """One optimiser step: loss, backward, clipping to ``grad_clip``, AdamW, scheduler
        and EMA; records the global batch's loss and the step's wall time.

        Raises :class:`TrainingDiverged` (after closing ``bar``) before the optimiser
        step if the loss or the gradient norm is not finite.
        """
        t0 = time.perf_counter()
        x0, t, xi, condition = self.next_batch()
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext():
            loss = objective(x0, t, xi, self.grid, condition)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        loss = self.ctx.all_mean(loss)  # the global batch's loss, the same on every process
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            bar.close()
            raise self.diverged(loss, grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        self.losses.append(loss.item())
        self.wall += time.perf_counter() - t0

    def run(self, progress: bool, on_step: Callable[[int, float], None] | None) -> None:
        """Steps up to ``cfg.steps``, a checkpoint every ``checkpoint_every`` and at the end."""
        cfg = self.cfg
        objective = self.objective()
        self.model.train()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            disable=not (progress and self.ctx.is_main),
            unit="step",
        )
        with contextlib.ExitStack() as stack:
            if self.amp:
                stack.enter_context(spectral_layers_in_float32(self.model))
            while self.step < cfg.steps:
                self.advance(objective, bar)
                bar.update(1)
                if self.step % 10 == 0:
                    recent = self.losses[-50:]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
                if on_step is not None:  # after the checkpoint, so it sees the committed state
                    on_step(self.step, self.losses[-1])
        bar.close()
        if self.last_saved is None:  # resumed at the end already, or zero steps
            self.save()
        self.model.eval()
        self.ema.model.eval()


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
    With ``resume=True`` and an existing checkpoint, training continues from it; a
    checkpoint of another network, Q, grid or optimiser settings (but those of
    :data:`RESUMABLE_OPTIM`), or one beyond ``cfg.steps``, is a ValueError naming what
    differs.

    The model trains on the device of its parameters; ``data`` may stay on the CPU (each
    batch is moved). In a joined process group (torchrun, :mod:`hdm.hilbert.distributed`)
    call this on every process with the same arguments: the W processes train one model
    data-parallel with global batch ``cfg.batch_size`` × W (module docstring); process 0
    writes the checkpoints. The losses recorded are those of the global batch.
    """
    _check_training_data(data, grid)
    checkpoint_path = Path(checkpoint_path)
    run = _TrainingRun(denoiser, data, grid, cfg, checkpoint_path, extra)
    if resume and checkpoint_path.exists():  # every process reads the same checkpoint
        state = load_checkpoint(checkpoint_path)
        run.check_resumable(state)
        run.restore(state)
    run.run(progress, on_step)
    recent = run.losses[-50:]
    return TrainResult(
        checkpoint=checkpoint_path,
        steps=run.step,
        final_loss=sum(recent) / max(1, len(recent)),
        wall_time_s=run.wall,
        denoiser=run.ema.model,
    )
