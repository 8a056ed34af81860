"""Noise schedules of variance-preserving (VP) diffusions: t ↦ (α_t, σ_t), α_t² + σ_t² = 1.

The forward process is X_t = α_t X_0 + σ_t ξ with ξ ~ N(0, Q), the solution of
dX = −½β(t) X dt + √β(t) dW_Q with β(t) = −2 d log α_t / dt. Samplers also use the
log signal-to-noise ratio λ_t = log(α_t/σ_t) and its inverse t(λ), and the
"variance-exploding" noise level ς_t = σ_t/α_t of the rescaled process X_t/α_t.

- :class:`CosineVP` (HDM's, after Nichol & Dhariwal 2021):
  log α_t = log cos(θ(t)) − log cos(θ(0)), θ(t) = (t+s)/(1+s)·π/2, s = 0.008,
  t ∈ [1e-5, 0.9946]; β(t) = π/(1+s)·tan θ(t).
- :class:`LinearVP` (DDPM / Song et al. 2021): β(t) = β₀ + t(β₁ − β₀),
  log α_t = −¼t²(β₁ − β₀) − ½tβ₀, t ∈ [1e-3, 1].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


class NoiseSchedule(ABC):
    """A VP schedule; every method takes and returns tensors of times (any shape)."""

    t_min: float
    t_max: float

    @abstractmethod
    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """log α_t."""

    @abstractmethod
    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −2 d log α_t/dt, units 1/time."""

    @abstractmethod
    def t_from_log_alpha(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """The inverse of ``log_alpha``."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ_t = log(α_t/σ_t)."""
        return self.log_alpha(t) - torch.log(self.sigma(t))

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of λ_t: α² = 1/(1 + e^{−2λ}), so log α = −½ log(1 + e^{−2λ})."""
        return self.t_from_log_alpha(-0.5 * torch.nn.functional.softplus(-2 * lam))

    def varsigma(self, t: torch.Tensor) -> torch.Tensor:
        """ς_t = σ_t/α_t, the noise level of X_t/α_t."""
        return torch.exp(-self.log_snr(t))

    def t_from_varsigma(self, vs: torch.Tensor) -> torch.Tensor:
        return self.t_from_log_snr(-torch.log(vs))

    @abstractmethod
    def to_dict(self) -> dict:
        """JSON-able description (see :func:`schedule_from_dict`)."""


@dataclass(frozen=True)
class CosineVP(NoiseSchedule):
    """HDM's cosine schedule (see module docstring)."""

    s: float = 0.008
    t_min: float = 1e-5
    t_max: float = 0.9946

    def _theta(self, t):
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def log_alpha(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.log(torch.cos(self._theta(t))) - math.log(math.cos(self._theta(0.0)))

    def beta(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return math.pi / (1 + self.s) * torch.tan(self._theta(t))

    def t_from_log_alpha(self, log_alpha):
        log_alpha = torch.as_tensor(log_alpha, dtype=torch.float64)
        cos_theta = torch.exp(log_alpha) * math.cos(self._theta(0.0))
        return torch.arccos(cos_theta) * 2 * (1 + self.s) / math.pi - self.s

    def to_dict(self):
        return {"kind": "cosine", "s": self.s, "t_min": self.t_min, "t_max": self.t_max}


@dataclass(frozen=True)
class LinearVP(NoiseSchedule):
    """Linear-β VP schedule (see module docstring)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def log_alpha(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def beta(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def t_from_log_alpha(self, log_alpha):
        la = torch.as_tensor(log_alpha, dtype=torch.float64)
        a = 0.25 * (self.beta_max - self.beta_min)
        b = 0.5 * self.beta_min
        return (-b + torch.sqrt(b * b - 4 * a * la)) / (2 * a)

    def to_dict(self):
        return {
            "kind": "linear",
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "t_min": self.t_min,
            "t_max": self.t_max,
        }


SCHEDULES = {"cosine": CosineVP, "linear": LinearVP}


def schedule_from_dict(d: dict) -> NoiseSchedule:
    kind = d.get("kind")
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; known: {sorted(SCHEDULES)}")
    return SCHEDULES[kind](**{k: v for k, v in d.items() if k != "kind"})
