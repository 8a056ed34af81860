"""The forward process in function space: X_t = α_t X_0 + σ_t ξ, ξ ~ N(0, Q).

Fields have shape (batch, channels, *grid.shape); each channel gets independent
Q-noise. The process is the composition of a schedule (α_t, σ_t) and a covariance
operator Q; it is the only place where the forward noise is drawn, always through Q.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hdm.hilbert.covariance import CovarianceOperator, covariance_from_dict
from hdm.hilbert.devices import draw_device
from hdm.hilbert.grids import Grid
from hdm.hilbert.schedules import NoiseSchedule, schedule_from_dict


def expand_to(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a per-sample vector (batch,) so that it broadcasts against ``like`` (batch, ...)."""
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1))).to(like)


@dataclass(frozen=True)
class ForwardProcess:
    """X_t = α_t X_0 + σ_t ξ with ξ ~ N(0, Q) (VP: α_t² + σ_t² = 1)."""

    schedule: NoiseSchedule
    covariance: CovarianceOperator

    def noise(
        self,
        n: int,
        channels: int,
        grid: Grid,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """ξ ~ N(0, Q) per sample, shape (n, channels, *grid.shape): independent per
        channel, but for a Q that couples channels (a spherical Q's wind pair)."""
        return self.covariance.sample_channels(n, channels, grid, generator=generator, dtype=dtype)

    def sample_times(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ U[t_min, t_max], shape (n,), float64."""
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=draw_device(generator))
        return self.schedule.t_min + (self.schedule.t_max - self.schedule.t_min) * u

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """x_t = α_t x0 + σ_t ξ for per-sample times t (batch,)."""
        alpha = expand_to(self.schedule.alpha(t), x0)
        sigma = expand_to(self.schedule.sigma(t), x0)
        return alpha * x0 + sigma * xi

    def prior_sample(
        self, n: int, channels: int, grid: Grid, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A draw from the terminal distribution N(0, Q) (α_T ≈ 0, σ_T ≈ 1)."""
        return self.noise(n, channels, grid, generator)

    def to_dict(self) -> dict:
        return {"schedule": self.schedule.to_dict(), "covariance": self.covariance.to_dict()}

    @staticmethod
    def from_dict(d: dict) -> ForwardProcess:
        return ForwardProcess(
            schedule=schedule_from_dict(d["schedule"]),
            covariance=covariance_from_dict(d["covariance"]),
        )
