"""The prior: a trained gridded model, and the grids it can be sampled on.

:func:`load_prior` reads a ``model.pt`` (or ``checkpoint.pt``, or a folder holding one)
into a :class:`Prior`: the denoiser, its training grid, its normaliser and what it was
trained on. :func:`target_grid` resolves where to sample: the training grid, a
refinement of it (zero-shot super-resolution, ``grid=2``), or any lat-lon grid of the
same domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import xarray as xr

from hdm.data.accessor import grid_of
from hdm.data.normalization import FieldNormaliser, normaliser_from_dict
from hdm.domains.statics import statics_from_record
from hdm.hilbert.checkpoints import (
    denoiser_from_checkpoint,
    file_sha256,
    load_checkpoint,
    load_gaussian,
    load_model_statistics,
    teleport_statistics,
)
from hdm.hilbert.devices import resolve_device
from hdm.hilbert.gaussian import GaussianStatistics
from hdm.hilbert.grids import Grid, LatLonGrid
from hdm.hilbert.networks import GridError
from hdm.hilbert.solver_statistics import ModelStatistics

__all__ = ["Prior", "load_prior", "target_grid"]


@dataclass
class Prior:
    """A trained gridded prior: denoiser, its training grid and normalisation.

    ``variables`` are the model's channels in order (one per variable), ``units`` their
    units (the units it was trained in, which inputs are converted to); ``gaussian`` the
    Gaussian statistics of its training data where ``hdm gaussian-stats`` made them
    (what teleportation needs, :meth:`teleport_statistics`); ``solver_statistics`` its
    empirical model statistics where ``hdm model-stats`` made them (the v3 sampler's)."""

    denoiser: torch.nn.Module
    grid: LatLonGrid
    normaliser: FieldNormaliser
    variables: tuple[str, ...]
    units: dict[str, str]
    path: str
    sha256: str
    metadata: dict
    gaussian: GaussianStatistics | None = None
    solver_statistics: ModelStatistics | None = None

    def to(self, device: str | torch.device) -> Prior:
        """Move the model to ``device`` ("auto", "cpu", "cuda", "cuda:K" or a
        torch.device; :func:`hdm.hilbert.devices.resolve_device`), in place; returns self.
        Its samples are then drawn there (:func:`hdm.conditioning.ensembles.draw_members`)."""
        self.denoiser.to(resolve_device(device))
        return self

    def teleport_statistics(self, varsigma: float | str) -> tuple[GaussianStatistics, float]:
        """The statistics and ς* for teleporting with ``varsigma`` ("auto": the measured ς*
        stored with them; a number: that ς*; :func:`hdm.hilbert.checkpoints.
        teleport_statistics` says what is missing)."""
        return teleport_statistics(self.gaussian, self.path, varsigma)

    @property
    def levels(self) -> tuple[tuple[str, float], ...]:
        """The (variable, level hPa) channels of a multi-level prior (empty for one whose
        channels are single-level variables)."""
        return tuple((v, lev) for v, lev in self.normaliser.channels if lev is not None)

    def check_single_level(self) -> None:
        """A ValueError for a prior with pressure-level channels: ``hdm downscale``
        downscales single-level variables only (their channels are the variables)."""
        if self.levels:
            shown = ", ".join(f"{v}@{lev:g}" for v, lev in self.levels[:4])
            raise ValueError(
                f"the model {self.path} has {len(self.normaliser.channels)} channels on "
                f"pressure levels ({shown}, ...): downscaling multi-level priors is not "
                "supported yet; condition it on profiles through the Python API "
                "(hdm.conditioning.profiles.profile_operator with a guidance)"
            )

    def channel(self, variable: str) -> int:
        """The channel of ``variable`` (KeyError naming the model's variables)."""
        if variable not in self.variables:
            raise KeyError(
                f"the model {self.path} has no variable {variable!r}; its variables are "
                f"{list(self.variables)}"
            )
        return self.variables.index(variable)

    def stats(self, variable: str) -> tuple[float, float]:
        """(mean, std) of ``variable`` on the training data, in its units."""
        self.channel(variable)
        mean, std = self.normaliser.channel_stats([(variable, None)])
        return float(mean[0]), float(std[0])

    @property
    def variable(self) -> str:
        """The variable of a one-variable model (ValueError naming them otherwise)."""
        if len(self.variables) != 1:
            raise ValueError(
                f"the model {self.path} has variables {list(self.variables)}: name one"
            )
        return self.variables[0]

    @property
    def mean_std(self) -> tuple[float, float]:
        """(mean, std) of a one-variable model's variable."""
        return self.stats(self.variable)


def _model_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"no model.pt or checkpoint.pt in {path}")
    return path


def load_prior(path: str | Path) -> Prior:
    """Load ``model.pt`` (or ``checkpoint.pt``; a folder holding one) of a gridded model;
    a model with static inputs gets them from the sources it recorded
    (:func:`hdm.domains.statics.statics_from_record`: the same files, or an error)."""
    path = _model_path(path)
    payload = load_checkpoint(path)
    grid = Grid.from_dict(payload["grid"])
    if not isinstance(grid, LatLonGrid):
        raise GridError(
            f"{path} is a model of {grid.describe()}, not of a lat-lon field; "
            "downscaling needs a gridded model (e.g. hdm train configs/atmos/uk_t2m.yaml)"
        )
    normaliser = normaliser_from_dict(payload["normaliser"])
    meta = payload.get("metadata", {})
    variables = tuple(meta.get("variables") or [c[0] for c in normaliser.channels])
    units = {v: str(meta.get("units", {}).get(v, "")) for v in variables}
    statics = statics_from_record(payload["statics"], str(path)) if "statics" in payload else None
    return Prior(
        denoiser=denoiser_from_checkpoint(payload, statics=statics),
        grid=grid,
        normaliser=normaliser,
        variables=variables,
        units=units,
        path=str(path),
        sha256=file_sha256(path),
        metadata=meta,
        gaussian=load_gaussian(path),
        solver_statistics=load_model_statistics(path),
    )


def target_grid(prior: Prior, grid: int | Grid | xr.Dataset | xr.DataArray | None) -> LatLonGrid:
    """The grid to sample on: the training grid (None), a refinement (an int factor), a
    LatLonGrid or the lat/lon of an xarray object; it must cover the training domain."""
    if grid is None:
        return prior.grid
    if isinstance(grid, bool):
        raise GridError(f"grid must be None, an int factor, a grid or a dataset, got {grid!r}")
    if isinstance(grid, int):
        if grid < 1:
            raise GridError(f"the refinement factor must be at least 1, got {grid}")
        return prior.grid.refined(grid)
    if isinstance(grid, xr.Dataset | xr.DataArray):
        grid = grid_of(grid)
    if not isinstance(grid, LatLonGrid):
        raise GridError(f"expected a LatLonGrid, got {type(grid).__name__}")
    if not grid.same_domain(prior.grid):
        raise GridError(
            f"the target grid {grid.describe()} does not span the model's domain "
            f"{prior.grid.describe()}; the model samples on resolutions of its own domain"
        )
    return grid
