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
from hdm.hilbert.denoisers import network_count
from hdm.hilbert.devices import resolve_device
from hdm.hilbert.gaussian import GaussianStatistics
from hdm.hilbert.grids import GlobalGrid, Grid, LatLonGrid
from hdm.hilbert.networks import GridError
from hdm.hilbert.solver_statistics import ModelStatistics

__all__ = ["Prior", "channel_name", "load_prior", "model_path", "target_grid"]


def channel_name(variable: str, level: float | None) -> str:
    """``variable`` for a single-level channel, ``variable@level`` (hPa) on a level."""
    return variable if level is None else f"{variable}@{level:g}"


@dataclass(repr=False)
class Prior:
    """A trained gridded prior: denoiser, its training grid and normalisation.

    ``variables`` are the model's variables in order, ``units`` their units (the units
    it was trained in, which inputs are converted to); its channels (:attr:`channels`) are
    the variables, or (variable, pressure level) pairs for a multi-level prior; ``gaussian`` the
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

    def __repr__(self) -> str:
        """One line of what the prior is (not its weights, normaliser or statistics)."""

        def hpa(levels: tuple[float, ...]) -> str:
            return f"[{', '.join(f'{x:g}' for x in levels)}]"

        on_levels = {v: lev for v in self.variables if (lev := self.levels_of(v))}
        parts = [f"variables={list(self.variables)}"]
        if len(set(on_levels.values())) == 1:  # every variable on levels has the same ones
            parts.append(f"levels={hpa(next(iter(on_levels.values())))} hPa")
        elif on_levels:
            text = ", ".join(f"{v}: {hpa(lev)}" for v, lev in on_levels.items())
            parts.append(f"levels={{{text}}} hPa")
        units = {v: u for v, u in self.units.items() if u}
        if units:
            parts.append(f"units={units}")
        parts.append(f"grid={self.grid.describe()}")
        parts.append(f"networks={network_count(self.denoiser)}")
        if self.gaussian is None:
            parts.append("gaussian=None")
        else:
            star = self.gaussian.varsigma_star
            measured = "" if star is None else f", ς*={star:.3g}"
            parts.append(f"gaussian=rank {self.gaussian.rank}{measured}")
        parts.append(f"solver_statistics={'yes' if self.solver_statistics else 'None'}")
        parts.append(f"path={self.path!r}" if self.path else "path=None")
        return f"Prior({', '.join(parts)})"

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
    def channels(self) -> tuple[tuple[str, float | None], ...]:
        """(variable, level hPa) of every channel in order; level None for a single-level
        variable (whose channel is the variable)."""
        return tuple(
            (v, None if lev is None else float(lev)) for v, lev in self.normaliser.channels
        )

    @property
    def channel_names(self) -> tuple[str, ...]:
        """A name per channel: the variable (``t2m``), or ``variable@level`` (``u@850``) on
        pressure levels; the keys of per-channel noise settings and attributes."""
        return tuple(channel_name(v, lev) for v, lev in self.channels)

    @property
    def levels(self) -> tuple[tuple[str, float], ...]:
        """The (variable, level hPa) channels of a multi-level prior (empty for one whose
        channels are single-level variables)."""
        return tuple((v, lev) for v, lev in self.channels if lev is not None)

    def levels_of(self, variable: str) -> tuple[float, ...]:
        """The pressure levels (hPa) of ``variable``'s channels (empty: single-level)."""
        self.channel(variable)
        return tuple(lev for v, lev in self.channels if v == variable and lev is not None)

    def channel_index(self, variable: str, level: float | None = None) -> int:
        """The channel of ``variable`` at ``level`` (hPa; None for a single-level
        variable); a KeyError naming the model's levels of that variable otherwise."""
        self.channel(variable)
        key = (variable, None if level is None else float(level))
        if key not in self.channels:
            have = [f"{lev:g}" for lev in self.levels_of(variable)] or ["none (single level)"]
            raise KeyError(
                f"the model {self.path} has no channel {channel_name(*key)}; the levels of "
                f"{variable} are {', '.join(have)} hPa"
            )
        return self.channels.index(key)

    def channel_indices(self, variable: str) -> list[int]:
        """The channels of ``variable``: its levels' in :meth:`levels_of` order, or its one
        channel for a single-level variable."""
        return [self.channel_index(variable, lev) for lev in self.levels_of(variable) or (None,)]

    def channel_stats(self, variable: str, level: float | None = None) -> tuple[float, float]:
        """(mean, std) of one channel on the training data, in its variable's units."""
        self.channel_index(variable, level)
        mean, std = self.normaliser.channel_stats([(variable, level)])
        return float(mean[0]), float(std[0])

    def channel(self, variable: str) -> int:
        """The index of ``variable`` among the model's variables (its channel for a
        single-level model; KeyError naming the model's variables)."""
        if variable not in self.variables:
            raise KeyError(
                f"the model {self.path} has no variable {variable!r}; its variables are "
                f"{list(self.variables)}"
            )
        return self.variables.index(variable)

    def stats(self, variable: str) -> tuple[float, float]:
        """(mean, std) of a single-level ``variable`` on the training data, in its units
        (:meth:`channel_stats` for one level of a multi-level variable)."""
        if self.levels_of(variable):
            raise KeyError(
                f"{variable} of the model {self.path} is on pressure levels "
                f"({', '.join(f'{lev:g}' for lev in self.levels_of(variable))} hPa): name a level"
            )
        return self.channel_stats(variable, None)

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


def model_path(path: str | Path) -> Path:
    """``path``, or the model.pt (else checkpoint.pt) in the folder ``path``."""
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
    path = model_path(path)
    payload = load_checkpoint(path)
    grid = Grid.from_dict(payload["grid"])
    if not isinstance(grid, LatLonGrid | GlobalGrid):
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
    if not isinstance(grid, LatLonGrid | GlobalGrid):
        raise GridError(f"expected a LatLonGrid, got {type(grid).__name__}")
    if not grid.same_domain(prior.grid):
        raise GridError(
            f"the target grid {grid.describe()} does not span the model's domain "
            f"{prior.grid.describe()}; the model samples on resolutions of its own domain"
        )
    return grid
