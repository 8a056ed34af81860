"""The shallow-water testbed: a long, multi-variable record of global states.

The rotating shallow-water equations on the Earth-sized sphere (radius 6,371 km, Ω = 7.29·10⁻⁵
s⁻¹, g = 9.81 m s⁻², mean depth H = 10 km), integrated by torch-harmonics' spectral
solver (``torch_harmonics.examples.ShallowWaterSolver``: vorticity, divergence and
geopotential in spherical harmonics truncated at ℓ < nlat/3, third-order
Adams–Bashforth, implicit hyperdiffusion of vorticity and divergence), give what the
real data of this project cannot: thousands of global states of three coupled
variables — height ``h`` (m) and the winds ``u``, ``v`` (m s⁻¹) — split by trajectory
into training, validation and test states that share no history.

Each trajectory starts from a random balanced-looking state drawn here, with the
caller's seed (never from torch's global generator): height H + A·ξ_h and relative
vorticity (U/L)·ξ_ζ with ξ_h, ξ_ζ independent draws of
:class:`~hdm.hilbert.covariance.SphericalCovariance` (Matérn ν = 1.5, ℓ_c =
``lengthscale``), A = ``height_amplitude``, U = ``mach``·√(gH), L = radius·ℓ_c, zero
divergence; it runs ``spin_up_hours`` (gravity waves radiate and the flow becomes
geostrophic turbulence), then a state is kept every ``every_hours``. The grid is the
equiangular :class:`~hdm.hilbert.grids.GlobalGrid` (both poles; the solver's north-first
rows and 0°-first longitudes are turned into the project's south-first, −180°-first
layout), so the states at 33 × 64 are exactly those at 65 × 128 at the shared points
when both solve the same band (see :func:`generate`).

The mass ∫ h dΩ is conserved by the equations; :func:`generate` records its relative drift
per trajectory (``mass_drift``), a check of every run.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from hdm._version import __version__
from hdm.data.stores import zarr_extensions
from hdm.hilbert.covariance import SphericalCovariance
from hdm.hilbert.grids import GlobalGrid

__all__ = ["SPLITS", "ShallowWaterConfig", "generate", "open_shallow_water", "simulate"]

#: the splits by trajectory: fractions of the trajectories, in this order
SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class ShallowWaterConfig:
    """What :func:`generate` makes.

    Attributes:
        nlat, nlon: the equiangular global grid (poles included; nlon even).
        trajectories: independent runs; states: kept per run.
        spin_up_hours, every_hours: hours before the first kept state, and between two.
        dt_seconds: the solver's time step (gravity waves at √(gH) ≈ 313 m s⁻¹ must
            cross less than a grid spacing per step).
        max_degree: the solver's truncation (None: ⌊(nlat + 1)/3⌋, dealiased).
        mach, height_amplitude, lengthscale: the initial state (module doc); U = 0.1 √(gH)
            ≈ 31 m s⁻¹ gives jets of 40–80 m s⁻¹ and depth anomalies of a few hundred
            metres once adjusted, the scales of the mid-troposphere.
        seed: trajectory k is seeded with (seed, k).
    """

    nlat: int = 65
    nlon: int = 128
    trajectories: int = 150
    states: int = 20
    spin_up_hours: float = 72.0
    every_hours: float = 12.0
    dt_seconds: float = 300.0
    max_degree: int | None = None
    mach: float = 0.1
    height_amplitude: float = 120.0
    lengthscale: float = 15.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nlon % 2 or self.nlon < 8 or self.nlat < 5:
            raise ValueError(
                f"the shallow-water grid needs nlat >= 5 and an even nlon >= 8, got "
                f"{self.nlat} x {self.nlon}"
            )
        for name in ("trajectories", "states"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("every_hours", "dt_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        steps = self.every_hours * 3600 / self.dt_seconds
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(
                f"every_hours ({self.every_hours}) must be a whole number of solver steps "
                f"of {self.dt_seconds} s"
            )

    @property
    def grid(self) -> GlobalGrid:
        return GlobalGrid.make(self.nlat, self.nlon)

    @property
    def degrees(self) -> int:
        return self.max_degree or (self.nlat + 1) // 3


@functools.lru_cache(maxsize=4)
def _solver(cfg: ShallowWaterConfig):
    """torch-harmonics' solver of ``cfg`` (its transforms precomputed once per config;
    :func:`simulate` only reads it)."""
    from torch_harmonics.examples import ShallowWaterSolver

    size = cfg.degrees
    solver = ShallowWaterSolver(
        cfg.nlat, cfg.nlon, cfg.dt_seconds, lmax=size, mmax=size, grid="equiangular"
    )
    return solver.double()


def _to_solver(field: torch.Tensor) -> torch.Tensor:
    """South-first, −180°-first rows → the solver's north-first, 0°-first layout."""
    return field.flip(-2).roll(field.shape[-1] // 2, dims=-1)


def _from_solver(field: torch.Tensor) -> torch.Tensor:
    return field.roll(field.shape[-1] // 2, dims=-1).flip(-2)


def initial_state(cfg: ShallowWaterConfig, solver, generator: torch.Generator) -> torch.Tensor:
    """The spectral state (geopotential, vorticity, divergence) of one random start."""
    grid = cfg.grid
    draws = SphericalCovariance("matern", cfg.lengthscale, 1.5).sample(
        2, grid, generator=generator, dtype=torch.float64
    )
    gravity, depth, radius = (float(solver.gravity), float(solver.havg), float(solver.radius))
    height = depth + cfg.height_amplitude * draws[0]
    speed = cfg.mach * math.sqrt(gravity * depth)
    vorticity = speed / (radius * math.radians(cfg.lengthscale)) * draws[1]
    spec = solver.grid2spec(_to_solver(torch.stack([gravity * height, vorticity])))
    return torch.cat([spec, torch.zeros_like(spec[:1])])


def simulate(cfg: ShallowWaterConfig, trajectory: int) -> np.ndarray:
    """The kept states of one trajectory, (states, 3, nlat, nlon) float32: h (m), u, v
    (m s⁻¹) on the project's layout; seeded by (``cfg.seed``, ``trajectory``)."""
    solver = _solver(cfg)
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + trajectory)
    state = initial_state(cfg, solver, generator)
    per_hour = 3600.0 / cfg.dt_seconds
    state = solver.timestep(state, round(cfg.spin_up_hours * per_hour))
    out = np.empty((cfg.states, 3, cfg.nlat, cfg.nlon), dtype=np.float32)
    gravity = float(solver.gravity)
    for k in range(cfg.states):
        if k:
            state = solver.timestep(state, round(cfg.every_hours * per_hour))
        fields = solver.gethuv(state)  # (geopotential, u, v) on the solver's grid
        fields = torch.cat([fields[:1] / gravity, fields[1:]])
        out[k] = _from_solver(fields).numpy()
    return out


def split_of(trajectories: int) -> np.ndarray:
    """The split name of each trajectory: the first ones train, then validation, then
    test, with :data:`SPLITS`' fractions rounded and at least one trajectory in each of
    validation and test from 3 trajectories on."""
    small = trajectories < 3
    n_val = 0 if small else max(1, round(SPLITS["validation"] * trajectories))
    n_test = 0 if small else max(1, round(SPLITS["test"] * trajectories))
    n_train = trajectories - n_val - n_test
    return np.array(["train"] * n_train + ["validation"] * n_val + ["test"] * n_test)


def generate(
    cfg: ShallowWaterConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Simulate every trajectory and write a zarr store ``out`` atomically: ``h``, ``u``,
    ``v`` (trajectory, step, lat, lon), ``hours`` (step), ``split`` (trajectory), the mass
    drift per trajectory and the config in the attributes."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    grid = cfg.grid
    lat, lon = grid.coords()
    data = np.empty((cfg.trajectories, cfg.states, 3, cfg.nlat, cfg.nlon), dtype=np.float32)
    for k in tqdm(range(cfg.trajectories), desc="shallow water", disable=not progress):
        data[k] = simulate(cfg, k)
    weights = grid.weights()
    mass = (data[:, :, 0].astype(np.float64) * weights).sum(axis=(-2, -1))
    drift = np.abs(mass / mass[:, :1] - 1).max(axis=1)
    dims = ("trajectory", "step", "lat", "lon")
    units = {"h": "m", "u": "m s-1", "v": "m s-1"}
    names = {"h": "fluid depth", "u": "eastward wind", "v": "northward wind"}
    ds = xr.Dataset(
        {
            name: (dims, data[:, :, c], {"units": units[name], "long_name": names[name]})
            for c, name in enumerate(("h", "u", "v"))
        },
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "trajectory": ("trajectory", np.arange(cfg.trajectories)),
            "step": ("step", np.arange(cfg.states)),
            "hours": ("step", cfg.spin_up_hours + cfg.every_hours * np.arange(cfg.states)),
            "split": ("trajectory", split_of(cfg.trajectories)),
            "mass_drift": ("trajectory", drift, {"long_name": "max |mass / initial mass − 1|"}),
        },
        attrs={
            "title": "hdm shallow-water testbed (rotating sphere, torch-harmonics solver)",
            "hdm_version": __version__,
            "grid": grid.describe(),
            "hdm_config": str(asdict(cfg)),
            **{f"config_{k}": v for k, v in asdict(cfg).items() if v is not None},
        },
    )
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zarr_extensions():  # the split names: fixed-width strings
        ds.to_zarr(tmp, mode="w", consolidated=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def open_shallow_water(path: str | Path, split: str | None = None) -> xr.Dataset:
    """The states of a store made by :func:`generate`, lazily, as ``(sample, lat, lon)``
    fields ``h``, ``u``, ``v`` (samples: the trajectory's steps, trajectory by
    trajectory), those of one ``split`` ("train", "validation", "test") or all."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no shallow-water store {path} (make it with hdm shallow-water)")
    ds = xr.open_zarr(path)
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {list(SPLITS)}")
        ds = ds.isel(trajectory=np.flatnonzero(ds["split"].values == split))
    return ds.stack(sample=("trajectory", "step")).transpose("sample", "lat", "lon")
