"""Training a denoiser: AdamW, gradient clipping, EMA, a warm-up + cosine learning-rate
schedule, atomic checkpoints and bit-exact resume.

Checkpoints are plain ``torch.save`` dictionaries of tensors and JSON-like values, read
back with ``torch.load(weights_only=True)``: never pickled code. They hold

    format, format_version, hdm_version, step, wall_time_s, losses,
    model (state dict), ema (state dict), optimizer, scheduler,
    rng (the data-order and noise generator states),
    network (the backbone's constructor arguments), process (schedule + Q),
    grid (the training grid), parameterisation, normaliser, config, metadata.

A checkpoint is written to a temporary file in the same folder, flushed to disk and
renamed over the target (``os.replace`` is atomic on POSIX), so an interrupted run
never leaves a half-written checkpoint. Resuming restores the model, EMA, optimiser,
scheduler and both generators, so a run resumed at step k ends bit-identical to one
that was never interrupted (same machine, same thread count).

If a loss or gradient becomes non-finite, training stops with
:class:`TrainingDiverged`; nothing is written for that step, so the last checkpoint on
disk is the last good one.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

import hdm
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.grids import Grid
from hdm.hilbert.losses import denoising_loss
from hdm.hilbert.networks import TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess

CHECKPOINT_FORMAT = "hdm-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read: missing, truncated, foreign or incompatible."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became non-finite."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings (all plain values; saved in every checkpoint).

    steps: optimiser steps. batch_size: curves/fields per step. lr: peak learning rate of
    AdamW; warmup_steps: linear warm-up; then cosine decay to lr·min_lr_ratio.
    weight_decay: AdamW's decoupled decay. grad_clip: max global gradient norm.
    ema_decay: exponential moving average of the weights used for sampling.
    checkpoint_every: steps between checkpoints (and always at the end). seed: seeds
    the data order, the times and the noise.
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


def build_denoiser(network: dict, process: dict, parameterisation: str) -> PreconditionedDenoiser:
    """A denoiser from the plain descriptions stored in a checkpoint."""
    backbone = TimeConditionedFNO(**network)
    return PreconditionedDenoiser(backbone, ForwardProcess.from_dict(process), parameterisation)


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Atomically write ``payload`` (tensors and JSON-like values) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a checkpoint; :class:`CheckpointError` explains any problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise CheckpointError(
            f"checkpoint {path} is truncated or not an hdm checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an hdm checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version} (written by hdm "
            f"{payload.get('hdm_version', '?')}); this hdm {hdm.__version__} reads format "
            f"version {CHECKPOINT_FORMAT_VERSION}: retrain or use a matching hdm version"
        )
    missing = [k for k in ("ema", "network", "process", "grid") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: it is incomplete")
    return payload


_TRAINING_STATE = ("model", "optimizer", "scheduler", "rng")


def export_model(checkpoint_path: str | Path, model_path: str | Path) -> Path:
    """Write the inference-only part of a checkpoint (EMA weights and every description,
    without the optimiser, raw weights and generator states): what is shipped and sampled."""
    payload = load_checkpoint(checkpoint_path)
    slim = {k: v for k, v in payload.items() if k not in _TRAINING_STATE}
    slim["exported_from_step"] = payload["step"]
    return save_checkpoint(model_path, slim)


def denoiser_from_checkpoint(payload: dict, use_ema: bool = True) -> PreconditionedDenoiser:
    """The trained denoiser (EMA weights by default), in eval mode."""
    denoiser = build_denoiser(payload["network"], payload["process"], payload["parameterisation"])
    try:
        denoiser.load_state_dict(payload["ema" if use_ema else "model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not match its network description: {exc}"
        ) from exc
    return denoiser.eval()


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
    """
    if data.ndim != 2 + grid.ndim or tuple(data.shape[2:]) != grid.shape:
        raise ValueError(f"data of shape {tuple(data.shape)} do not match grid {grid.shape}")
    if not torch.isfinite(data).all():
        bad = int((~torch.isfinite(data)).flatten(1).any(1).nonzero()[0, 0])
        raise ValueError(f"training data contain non-finite values in sample {bad}")
    checkpoint_path = Path(checkpoint_path)
    model = denoiser
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: lr_factor(k, cfg))
    ema = EMA(model, cfg.ema_decay)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, losses, wall = 0, [], 0.0
    order, cursor = torch.randperm(len(data), generator=data_gen), 0

    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        data_gen.set_state(state["rng"]["data"])
        noise_gen.set_state(state["rng"]["noise"])
        order, cursor = state["rng"]["order"], int(state["rng"]["cursor"])
        step, losses, wall = int(state["step"]), list(state["losses"]), float(state["wall_time_s"])

    def payload() -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "hdm_version": hdm.__version__,
            "step": step,
            "wall_time_s": wall,
            "losses": losses,
            "model": model.state_dict(),
            "ema": ema.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "data": data_gen.get_state(),
                "noise": noise_gen.get_state(),
                "order": order,
                "cursor": cursor,
            },
            "network": dict(model.backbone.config),
            "process": model.process.to_dict(),
            "grid": grid.to_dict(),
            "parameterisation": model.parameterisation,
            "optim": asdict(cfg),
            **(extra or {}),
        }

    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress, unit="step")
    last_saved = None
    while step < cfg.steps:
        t0 = time.perf_counter()
        if cursor + cfg.batch_size > len(order):
            order, cursor = torch.randperm(len(data), generator=data_gen), 0
        idx = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        loss = denoising_loss(model, data[idx], grid, noise_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
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
            save_checkpoint(checkpoint_path, payload())
            last_saved = step
        if on_step is not None:  # after the checkpoint, so it sees the committed state
            on_step(step, losses[-1])
    bar.close()
    if last_saved is None:  # resumed at the end already, or zero steps
        save_checkpoint(checkpoint_path, payload())
    model.eval()
    ema.model.eval()
    return TrainResult(
        checkpoint=checkpoint_path,
        steps=step,
        final_loss=sum(losses[-50:]) / max(1, len(losses[-50:])),
        wall_time_s=wall,
        denoiser=ema.model,
    )
