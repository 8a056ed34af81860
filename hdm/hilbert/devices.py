"""Where tensors live: the ``--device`` choice of sampling, and the device of a draw.

Sampling runs where its generator is: a sampler draws N(0, Q) noise with the injected
``torch.Generator`` on that generator's device and keeps every field there, so a run is
placed by the generator :func:`hdm.conditioning.ensembles.draw_members` makes on the
chosen device and by moving the model there (observation operators, Q's spectral factors
and guidance solves follow the fields they are applied to).

Reproducibility: the same device, seed and inputs give the same output; the CPU and a
CUDA device draw different random streams and differ in the last bits of floating-point
sums, so their members are different draws of the same posterior.
"""

from __future__ import annotations

import torch

__all__ = [
    "DEVICE_CHOICES",
    "DeviceError",
    "check_device_spec",
    "denoiser_device",
    "draw_device",
    "resolve_device",
    "seeded_generator",
]

#: what ``--device`` takes: the CPU, CUDA where present ("auto"), or a CUDA device
DEVICE_CHOICES = "auto, cpu, cuda or cuda:K"


class DeviceError(ValueError):
    """A device that cannot be used here (the message names what torch sees)."""


def _what_torch_sees() -> str:
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build)"
        return f"torch {torch.__version__} sees no CUDA device (its CUDA version: {build})"
    count = torch.cuda.device_count()
    names = ", ".join(f"cuda:{k} {torch.cuda.get_device_name(k)}" for k in range(count))
    return f"torch sees {count} CUDA device(s): {names}"


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The device for ``spec``: "auto" (or None) → cuda:0 where CUDA is available, else the
    CPU; "cpu"; "cuda" → cuda:0; "cuda:K" (K < the number of visible devices).

    Raises:
        DeviceError: an unknown name, or a CUDA device torch does not see (naming what
            it sees).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {spec!r}: use {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise DeviceError(f"unsupported device {spec!r}: use {DEVICE_CHOICES}")
    index = 0 if device.index is None else device.index
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise DeviceError(f"device {spec!r} is not available: {_what_torch_sees()}")
    return torch.device("cuda", index)


def check_device_spec(spec: str | None) -> str:
    """A ``device`` config value checked for its form ("auto", "cpu", "cuda", "cuda:K"),
    without asking whether the device exists (a config may be written on a login node
    and run on a GPU node); lower-cased."""
    text = "auto" if spec is None else str(spec).strip().lower()
    head, _, index = text.partition(":")
    if text in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
        return text
    raise DeviceError(f"device must be one of {DEVICE_CHOICES}, got {spec!r}")


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (where a run's draws happen)."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def draw_device(generator: torch.Generator | None) -> torch.device:
    """Where draws from ``generator`` land: its device (None: the CPU)."""
    return torch.device("cpu") if generator is None else generator.device


def denoiser_device(denoiser) -> torch.device:
    """The device of a denoiser's parameters (a guided denoiser: of the one it wraps), or
    its ``device`` attribute (the closed-form Gaussian oracle); else the CPU."""
    while not isinstance(denoiser, torch.nn.Module) and hasattr(denoiser, "denoiser"):
        denoiser = denoiser.denoiser
    if isinstance(getattr(denoiser, "device", None), torch.device):
        return denoiser.device
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            return p.device
    return torch.device("cpu")
