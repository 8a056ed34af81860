"""Static inputs: time-invariant fields a network sees beside the diffused state.

Land fraction, orography and latitude are known exactly on every grid, at every
resolution: they are conditioning channels of the score network, not observations, and
they are never noised (SCIENCE.md §4, "Static inputs"). :class:`StaticInputs` holds
a *provider*, a function from a grid to the fields on it (regridded from files,
computed from polygons, ... by the caller, so this module stays free of data formats),
and the per-field normalisation fitted on the training grid:

    s_k(grid) = (raw_k(grid) − mean_k) / std_k,   a tensor (K, *grid.shape).

Fields are cached per grid (a sampler asks for them at every network evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from hdm.hilbert.grids import Grid

__all__ = ["StaticInputs"]


class StaticInputs:
    """Named static fields on any grid, normalised (module doc).

    Args:
        names: one name per field (K fields).
        provider: ``provider(grid)`` → array (K, *grid.shape) of the raw fields (their
            physical units), finite everywhere.
        mean, std: (K,) normalisation; None: fitted on the first grid asked for (the
            training grid).
    """

    def __init__(
        self,
        names: Sequence[str],
        provider: Callable[[Grid], np.ndarray],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.provider = provider
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        self._cache: dict[Grid, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.names)

    def raw(self, grid: Grid) -> np.ndarray:
        """The fields in their physical units, (K, *grid.shape), checked."""
        values = np.asarray(self.provider(grid), dtype=np.float64)
        if values.shape != (len(self), *grid.shape):
            raise ValueError(
                f"static inputs {list(self.names)}: the provider gave shape {values.shape} "
                f"on {grid.describe()}, expected {(len(self), *grid.shape)}"
            )
        bad = [n for n, v in zip(self.names, values) if not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"static input(s) {bad} are not finite on {grid.describe()}")
        return values

    def fit(self, grid: Grid) -> StaticInputs:
        """Fit mean and std on ``grid`` (area-weighted; a constant field gets std 1)."""
        values = self.raw(grid).reshape(len(self), -1)
        w = (grid.weights() / grid.weights().sum()).reshape(-1)
        mean = values @ w
        std = np.sqrt(((values - mean[:, None]) ** 2) @ w)
        self.mean, self.std = mean, np.where(std > 1e-12 * (1 + np.abs(mean)), std, 1.0)
        self._cache.clear()
        return self

    def __call__(self, grid: Grid, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """The normalised fields on ``grid``, (K, *grid.shape)."""
        if self.mean is None or self.std is None:
            self.fit(grid)
        if grid not in self._cache:
            shape = (-1, *[1] * grid.ndim)
            values = (self.raw(grid) - self.mean.reshape(shape)) / self.std.reshape(shape)
            self._cache[grid] = torch.as_tensor(values)
        return self._cache[grid].to(dtype=dtype, device=device)

    def to_dict(self) -> dict:
        """The normalisation (the provider is rebuilt by whoever loads a model)."""
        return {
            "names": list(self.names),
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }
