"""Checkpoints: the on-disk format of a trained model, written atomically, read safely.

A checkpoint is a plain ``torch.save`` dictionary of tensors and JSON-like values, read
back with ``torch.load(weights_only=True)``: never pickled code. It holds

    format, format_version, hdm_version, step, wall_time_s, losses,
    model (state dict), ema (state dict), optimizer, scheduler,
    rng (the data-order and noise generator states), world_size (processes that wrote it),
    network (the backbone's constructor arguments), process (schedule + Q),
    grid (the training grid), parameterisation, normaliser, config, metadata and, for a
    model with static input channels, statics (their names, sources and normalisation).

:func:`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk
and renames it over the target (``os.replace`` is atomic on POSIX), so an interrupted
write never leaves a half-written file. :func:`export_model` keeps the inference part
(EMA weights and the descriptions): the shipped ``model.pt``. :func:`file_sha256` is the
hash recorded in every output made from a model.

The Gaussian statistics of a model's training data (:mod:`hdm.hilbert.gaussian`, made by
``hdm gaussian-stats``) are a file of their own beside it, ``gaussian.pt``
(:func:`save_gaussian`, :func:`load_gaussian`): they are data statistics plus the ς*
measured with that model, recorded with the model's sha256, so adding them never rewrites
a model file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import torch

from hdm._version import __version__
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.gaussian import GaussianStatistics, TeleportError
from hdm.hilbert.networks import NetworkEnsemble, TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.regime import SmallScaleLevel
from hdm.hilbert.solver_statistics import ModelStatistics, SolverStatisticsError
from hdm.hilbert.statics import StaticInputs

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "GAUSSIAN_FILE",
    "MODEL_STATS_FILE",
    "CheckpointError",
    "build_denoiser",
    "denoiser_from_checkpoint",
    "export_ensemble",
    "export_model",
    "file_sha256",
    "load_checkpoint",
    "load_gaussian",
    "load_model_statistics",
    "required_model_statistics",
    "save_checkpoint",
    "save_gaussian",
    "save_model_statistics",
    "teleport_statistics",
]

CHECKPOINT_FORMAT = "hdm-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read: missing, truncated, foreign or incompatible."""


def build_denoiser(
    network: dict,
    process: dict,
    parameterisation: str,
    statics: StaticInputs | None = None,
    regime: dict | None = None,
) -> PreconditionedDenoiser:
    """A denoiser from the plain descriptions stored in a checkpoint (``statics``: the
    static inputs of a model that has static channels; ``regime``: the record of a model
    conditioned on its small-scale level, :mod:`hdm.hilbert.regime`); ``network["kind"]``
    "sfno" is a :class:`~hdm.hilbert.spherical_network.TimeConditionedSFNO`, else the
    planar FNO; ``network["ensemble"]`` K > 1: a
    :class:`~hdm.hilbert.networks.NetworkEnsemble` of K such networks."""
    network = dict(network)
    size = int(network.pop("ensemble", 1))
    if network.get("kind") == "sfno":
        from hdm.hilbert.spherical_network import TimeConditionedSFNO

        def build() -> torch.nn.Module:
            return TimeConditionedSFNO(**{k: v for k, v in network.items() if k != "kind"})
    else:

        def build() -> torch.nn.Module:
            return TimeConditionedFNO(**network)

    backbone = build() if size == 1 else NetworkEnsemble([build() for _ in range(size)])
    return PreconditionedDenoiser(
        backbone,
        ForwardProcess.from_dict(process),
        parameterisation,
        statics,
        None if regime is None else SmallScaleLevel.from_dict(regime),
    )


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


#: The first bytes of the zip archive ``torch.save`` writes (every hdm checkpoint)
_ZIP_MAGIC = b"PK\x03\x04"


def _model_hint(path: Path) -> str:
    """``"; the model in that folder is …/model.pt"`` where there is one beside ``path``
    (a config.yaml or train_log.json given in place of the model), else ``""``."""
    for name in ("model.pt", "checkpoint.pt"):
        sibling = path.with_name(name)
        if sibling != path and sibling.is_file():
            return f"; the model in that folder is {sibling}"
    return ""


def _why_unreadable(path: Path, exc: Exception) -> tuple[bool, str]:
    """(whether ``path`` is a damaged torch file rather than a foreign one, why
    ``torch.load(weights_only=True)`` refused it in a few words). Torch's own advice for
    an unpickling error (re-run with ``weights_only=False``) is left out: that runs
    whatever code the file holds, and an hdm file never needs it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as err:
        return False, f"cannot be read: {err.strerror or err}"
    if head != _ZIP_MAGIC:  # a YAML, JSON, PNG, … file: not written by torch.save
        kind = f"a {path.suffix} file" if path.suffix else "a file"
        return False, f"{kind}, not a PyTorch file"
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return False, "it holds Python objects, which hdm never unpickles: tensors and values only"
    first = text.splitlines()[0] if text.strip() else "unreadable"
    return True, f"{type(exc).__name__}: {first}"


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a checkpoint; :class:`CheckpointError` explains any problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        damaged, why = _why_unreadable(path, exc)
        if damaged:
            message = f"checkpoint {path} is truncated or not an hdm checkpoint ({why})"
        else:
            message = f"{path} is not an hdm checkpoint ({why})"
        hint = _model_hint(path) or (
            "" if damaged else ": give a model.pt or checkpoint.pt, or the folder holding one"
        )
        raise CheckpointError(message + hint) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an hdm checkpoint (no '{CHECKPOINT_FORMAT}' tag){_model_hint(path)}"
        )
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version} (written by hdm "
            f"{payload.get('hdm_version', '?')}); this hdm {__version__} reads format "
            f"version {CHECKPOINT_FORMAT_VERSION}: retrain or use a matching hdm version"
        )
    missing = [k for k in ("ema", "network", "process", "grid") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: it is incomplete")
    return payload


#: Left out of the exported model: what only resuming needs, and the per-step loss
#: history (7,000 pickled floats are 63 kB of a shipped file; the checkpoint keeps it).
_TRAINING_STATE = ("model", "optimizer", "scheduler", "rng", "losses")


def export_model(checkpoint_path: str | Path, model_path: str | Path) -> Path:
    """Write the inference-only part of a checkpoint (EMA weights and every description,
    without the optimiser, raw weights, generator states and loss history): what is
    shipped and sampled."""
    payload = load_checkpoint(checkpoint_path)
    slim = {k: v for k, v in payload.items() if k not in _TRAINING_STATE}
    slim["exported_from_step"] = payload["step"]
    return save_checkpoint(model_path, slim)


#: What the networks of an ensemble must share (their weights, seeds, step counts and run
#: metadata may differ).
_ENSEMBLE_SHARED = ("network", "process", "grid", "parameterisation", "normaliser", "statics")


def export_ensemble(
    member_models: list[str | Path], model_path: str | Path, config: dict | None = None
) -> Path:
    """Write one model file of the networks in ``member_models`` (exported ``model.pt``
    files of one recipe trained with different seeds): the first's payload with
    ``network["ensemble"] = K`` and the EMA weights of network k under
    ``backbone.members.k.``, sampled as a :class:`~hdm.hilbert.networks.NetworkEnsemble`.
    ``ensemble_members`` records each network's seed, step and file hash; ``config`` (the
    run's config as a mapping) replaces the first network's, which names one network.

    Raises:
        CheckpointError: fewer than 2 files, an ensemble among them, or two that differ in
            what they must share (network, Q and schedule, grid, normaliser, statics),
            naming the file and the entry.
    """
    if len(member_models) < 2:
        raise CheckpointError(f"an ensemble needs at least 2 models, got {len(member_models)}")
    payloads = [load_checkpoint(p) for p in member_models]
    first = payloads[0]
    for path, payload in zip(member_models, payloads):
        if "ensemble" in payload["network"]:
            raise CheckpointError(f"{path} is an ensemble already; give its networks' files")
        for key in _ENSEMBLE_SHARED:
            if payload.get(key) != first.get(key):
                raise CheckpointError(
                    f"{path} differs from {member_models[0]} in its {key!r}: the networks "
                    "of an ensemble are one recipe trained with different seeds"
                )
    out = {k: v for k, v in first.items() if k != "ema"}
    out["network"] = {**first["network"], "ensemble": len(payloads)}
    if config is not None:
        out["config"] = config
    out["ema"] = {
        f"backbone.members.{k}.{name.removeprefix('backbone.')}": value
        for k, payload in enumerate(payloads)
        for name, value in payload["ema"].items()
    }
    out["ensemble_members"] = [
        {
            "seed": payload.get("optim", {}).get("seed"),
            "step": payload.get("exported_from_step", payload["step"]),
            "sha256": file_sha256(path),
        }
        for path, payload in zip(member_models, payloads)
    ]
    return save_checkpoint(model_path, out)


def denoiser_from_checkpoint(
    payload: dict, use_ema: bool = True, statics: StaticInputs | None = None
) -> PreconditionedDenoiser:
    """The trained denoiser (EMA weights by default), in eval mode. A model with static
    channels needs ``statics`` with the normalisation recorded at training (the
    checkpoint's ``statics`` entry); without them it raises when called, saying so."""
    denoiser = build_denoiser(
        payload["network"],
        payload["process"],
        payload["parameterisation"],
        statics,
        payload.get("regime"),
    )
    try:
        denoiser.load_state_dict(payload["ema" if use_ema else "model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not match its network description: {exc}"
        ) from exc
    return denoiser.eval()


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: the file of a model's Gaussian statistics, beside its model.pt
GAUSSIAN_FILE = "gaussian.pt"


def save_gaussian(model_path: str | Path, stats: GaussianStatistics) -> Path:
    """Write ``stats`` atomically to ``gaussian.pt`` beside ``model_path``."""
    return save_checkpoint(Path(model_path).with_name(GAUSSIAN_FILE), stats.to_dict())


def _load_beside(model_path: str | Path, name: str, from_dict, what: str, command: str):
    """The statistics file ``name`` beside ``model_path`` read with ``from_dict`` (None
    when there is none); a damaged file, or one made for another model (its recorded
    sha256 differs), is a :class:`CheckpointError` saying to rerun ``hdm COMMAND``."""
    model_path = Path(model_path)
    path = model_path.with_name(name)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file
        raise CheckpointError(
            f"{path} is not readable {what} ({_why_unreadable(path, exc)[1]}); recompute it with "
            f"`hdm {command} {model_path.parent}`"
        ) from exc
    try:
        stats = from_dict(payload)
    except Exception as exc:  # a file of another kind, or of an older layout
        first = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not readable {what} ({first})") from exc
    sha = file_sha256(model_path)
    if stats.model_sha256 not in (None, sha):
        raise CheckpointError(
            f"{path} was made for the model with sha256 {stats.model_sha256[:12]}…, not "
            f"{model_path} ({sha[:12]}…); recompute it with `hdm {command} "
            f"{model_path.parent}`"
        )
    return stats


def load_gaussian(model_path: str | Path) -> GaussianStatistics | None:
    """The Gaussian statistics beside ``model_path`` (None when there are none; see
    :func:`_load_beside` for the errors)."""
    return _load_beside(
        model_path, GAUSSIAN_FILE, GaussianStatistics.from_dict, "Gaussian statistics",
        "gaussian-stats",
    )  # fmt: skip


def teleport_statistics(
    stats: GaussianStatistics | None, model_path: str | Path, teleport: float | str
) -> tuple[GaussianStatistics, float]:
    """The statistics of the model at ``model_path`` and ς* for ``teleport`` ("auto": the
    measured ς* stored with them; a number: that ς*); a :class:`TeleportError` saying how
    to compute them where they are missing, or why no ς* was measured."""
    if stats is None:
        raise TeleportError(
            f"teleportation needs the Gaussian statistics of the model's training data, "
            f"and {model_path} has none ({GAUSSIAN_FILE} beside it): compute them with "
            f"`hdm gaussian-stats {Path(model_path).parent}`"
        )
    if teleport != "auto":
        return stats, float(teleport)
    if stats.varsigma_star is None:
        why = (
            "no level of its curve met the criterion"
            if stats.curve
            else "the model has several channels or a grid too large to measure it"
        )
        raise TeleportError(
            f"the Gaussian statistics of {model_path} hold no measured ς* ({why}): give the "
            "level, e.g. teleport=1.0"
        )
    return stats, stats.varsigma_star


MODEL_STATS_FILE = "model_stats.pt"


def save_model_statistics(model_path: str | Path, stats: ModelStatistics) -> Path:
    """Write the v3 sampler's statistics atomically to ``model_stats.pt`` beside the model."""
    return save_checkpoint(Path(model_path).with_name(MODEL_STATS_FILE), stats.to_dict())


def load_model_statistics(model_path: str | Path) -> ModelStatistics | None:
    """The v3 statistics beside ``model_path`` (None when there are none; see
    :func:`_load_beside` for the errors)."""
    return _load_beside(
        model_path, MODEL_STATS_FILE, ModelStatistics.from_dict, "model statistics",
        "model-stats",
    )  # fmt: skip


def required_model_statistics(
    stats: ModelStatistics | None, model_path: str | Path, sampler: str
) -> ModelStatistics:
    """``stats`` for a sampler that needs them (v3); a :class:`SolverStatisticsError`
    saying how to compute them where the model has none."""
    if stats is None:
        raise SolverStatisticsError(
            f"the {sampler} sampler needs the model's empirical statistics, and {model_path} "
            f"has none ({MODEL_STATS_FILE} beside it): compute them with `hdm model-stats "
            f"{Path(model_path).parent}`"
        )
    return stats
