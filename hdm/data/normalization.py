"""Normalisation of training data, fitted once and stored with the model.

A normaliser is fitted on the **training split only** (never on validation or test
data, so no information leaks from them into the model) and saved next to the weights
as a plain, JSON-able dictionary, so that generated samples can be mapped back to
physical units.

:class:`ScalarNormaliser` is the simplest one: one global mean and standard deviation
over every finite value of the training data (all samples, all grid points, all
channels together). With m and s fitted on the training values v_1, ..., v_N,

    m = (1/N) Σ_i v_i,        s² = (1/N) Σ_i (v_i − m)²     (population variance),

    normalise(u)   = (u − m) / s,
    denormalise(z) = s · z + m,

so the normalised training data have mean 0 and variance 1 (the scale the noise
schedules assume), and ``denormalise(normalise(u)) == u`` up to rounding (a few ulp).
A single scalar keeps the *shape* of each function intact: it does not rescale grid
points or curves differently, so covariances are only multiplied by 1/s².

:class:`FieldNormaliser` normalises gridded fields per variable (and optionally per
pressure level): for a variable v (and level p) with training values v_{t,i,j} on a
latitude–longitude grid, the statistics are **area weighted** (cos φ_i, see
:func:`hdm.data.schema.lat_weights`; set ``weighting="none"`` for plain means), over
the training time slice only, NaNs ignored:

    m_v = Σ w_i v_{tij} / Σ w_i,        s_v² = Σ w_i v_{tij}² / Σ w_i − m_v²,

sums over t, i, j (and over levels unless ``per_level``), with W = Σ w_i over the
finite values. Area weighting makes the statistics those of the continuous field
(independent of the grid resolution, and of the crowding of grid points near the
poles). The three sums (Σw, Σwv, Σwv²) are accumulated in float64 by dask in **one**
pass over the data (one ``dask.compute`` for every variable), so a training set of any
size is read once, chunk by chunk, in bounded memory. The one-pass variance loses
about log10(m²/s²) of float64's 16 digits (≈ 3.5 digits for 2 m temperature, 280 K
± 15 K), which is harmless. Channels are laid out as in
:func:`hdm.data.accessor.channel_layout` (variables in order, each leveled variable
expanded by ascending level), which is how tensors are normalised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import dask
import numpy as np
import pandas as pd
import xarray as xr

from hdm.data.schema import LAT, LEVEL, TIME, lat_weights

__all__ = ["FieldNormaliser", "ScalarNormaliser", "VariableStats", "normaliser_from_dict"]


def _as_numpy(values: Any) -> np.ndarray:
    """Return ``values`` as a float64 numpy array (numpy, torch, xarray, lists)."""
    detach = getattr(values, "detach", None)
    if callable(detach):  # a torch tensor: leave the autograd graph and the device
        values = detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _set_units(obj: Any, units: str | None) -> Any:
    """Correct the ``units`` attribute of an xarray object after rescaling.

    xarray keeps attributes through arithmetic, so without this a normalised
    DataArray would still claim to be in, e.g., counts per hour. ``units=None``
    removes a ``units`` attribute equal to "1" (the physical units are not known
    to a scalar normaliser). Works on a shallow copy, so the input's attributes are
    never modified; anything that is not an xarray object is returned as is.
    """
    if isinstance(obj, xr.Dataset):
        return obj.assign({name: _set_units(v, units) for name, v in obj.data_vars.items()})
    if not isinstance(obj, xr.DataArray):
        return obj
    out = obj.copy(deep=False)
    out.attrs = dict(obj.attrs)
    if units is not None:
        out.attrs["units"] = units
    elif out.attrs.get("units") == "1":
        del out.attrs["units"]
    return out


@dataclass(frozen=True)
class ScalarNormaliser:
    """Global affine normalisation ``z = (u − mean) / std``.

    Attributes:
        mean: the mean m of the training values, in the data's physical units.
        std: the (population) standard deviation s > 0 of the training values, in the
            data's physical units.

    ``normalise`` and ``denormalise`` are elementwise arithmetic with Python floats,
    so they work on numpy arrays, torch tensors (dtype and device kept, differentiable)
    and xarray objects (lazy dask arrays stay lazy) alike. On xarray objects the
    ``units`` attribute of the result is set to "1" by ``normalise``, and a "1"
    is removed by ``denormalise``.
    """

    KIND: ClassVar[str] = "scalar"

    mean: float
    std: float

    def __post_init__(self) -> None:
        # Coerce numpy scalars to plain floats so that to_dict() is JSON-able.
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", float(self.std))
        if not math.isfinite(self.mean):
            raise ValueError(f"ScalarNormaliser mean must be finite, got {self.mean}")
        if not (math.isfinite(self.std) and self.std > 0.0):
            raise ValueError(f"ScalarNormaliser std must be finite and > 0, got {self.std}")

    @classmethod
    def fit(cls, values: np.ndarray) -> ScalarNormaliser:
        """Fit the mean and standard deviation over all finite entries of ``values``.

        Args:
            values: training data of any shape (numpy array, torch tensor, xarray
                object or nested lists). NaN and ±inf entries are ignored. Pass only
                the training split.

        Returns:
            the fitted normaliser.

        Raises:
            ValueError: if there is no finite value, or if the finite values are all
                equal (std 0, so the data cannot be scaled to unit variance).
        """
        arr = _as_numpy(values)
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            what = "is empty" if arr.size == 0 else f"has no finite value ({arr.size} entries)"
            raise ValueError(f"cannot fit a ScalarNormaliser: the data {what}")
        mean = float(finite.mean())
        std = float(finite.std())
        if std == 0.0:
            raise ValueError(
                "cannot fit a ScalarNormaliser: std is 0 "
                f"(all {finite.size} finite values equal {mean})"
            )
        return cls(mean=mean, std=std)

    def normalise(self, x: Any) -> Any:
        """Map data in physical units to normalised units: ``(x − mean) / std``.

        Args:
            x: numpy array, torch tensor or xarray object of any shape, physical units.

        Returns:
            the same kind of object and shape, dimensionless.
        """
        return _set_units((x - self.mean) / self.std, "1")

    def denormalise(self, x: Any) -> Any:
        """Map normalised data back to physical units: ``x · std + mean``.

        Args:
            x: numpy array, torch tensor or xarray object of any shape, dimensionless.

        Returns:
            the same kind of object and shape, in the physical units of the fit.
        """
        return _set_units(x * self.std + self.mean, None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary ``{"kind": "scalar", "mean": m, "std": s}``."""
        return {"kind": self.KIND, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScalarNormaliser:
        """Rebuild a normaliser written by :meth:`to_dict`.

        Raises:
            ValueError: if ``d`` is not a mapping, its ``kind`` is not "scalar", a key
                is missing or an unexpected key is present.
        """
        if not isinstance(d, dict):
            raise ValueError(f"ScalarNormaliser.from_dict expects a dict, got {type(d).__name__}")
        expected = {"kind", "mean", "std"}
        missing = sorted(expected - d.keys())
        if missing:
            raise ValueError(
                f"ScalarNormaliser.from_dict: missing key(s) {missing}; "
                f"expected {sorted(expected)}, got {sorted(d)}"
            )
        if d["kind"] != cls.KIND:
            raise ValueError(
                f"ScalarNormaliser.from_dict: wrong kind {d['kind']!r}, expected {cls.KIND!r}"
            )
        unexpected = sorted(d.keys() - expected)
        if unexpected:
            raise ValueError(f"ScalarNormaliser.from_dict: unexpected key(s) {unexpected}")
        return cls(mean=d["mean"], std=d["std"])


Channel = tuple[str, float | None]


@dataclass(frozen=True)
class VariableStats:
    """Mean and standard deviation of one variable, physical units.

    Attributes:
        name: the variable name.
        mean, std: one value (shared by all levels), or one per entry of ``levels``.
        levels: the pressure levels (hPa, ascending) of a leveled variable, else None.
        units: the variable's ``units`` attribute at fitting time (None if absent).
    """

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    levels: tuple[float, ...] | None = None
    units: str | None = None

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in np.atleast_1d(self.mean))
        std = tuple(float(v) for v in np.atleast_1d(self.std))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.levels is not None:
            object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if len(mean) != len(std):
            raise ValueError(f"variable {self.name!r}: {len(mean)} means but {len(std)} stds")
        n_lev = len(self.levels) if self.levels is not None else 1
        if len(mean) not in (1, n_lev):
            raise ValueError(f"variable {self.name!r}: {len(mean)} statistics for {n_lev} level(s)")
        where = self.name if len(mean) == 1 else f"{self.name} at levels {self.levels}"
        if not all(math.isfinite(m) for m in mean):
            raise ValueError(f"the mean of {where} is not finite: {mean}")
        if not all(math.isfinite(v) and v > 0.0 for v in std):
            raise ValueError(f"the std of {where} must be finite and > 0, got {std}")

    @property
    def per_level(self) -> bool:
        return self.levels is not None and len(self.mean) == len(self.levels) > 1

    def channels(self) -> tuple[Channel, ...]:
        if self.levels is None:
            return ((self.name, None),)
        return tuple((self.name, lev) for lev in self.levels)

    def at(self, level: float | None) -> tuple[float, float]:
        """(mean, std) of the channel at ``level`` (None for a variable without levels)."""
        if len(self.mean) == 1:
            return self.mean[0], self.std[0]
        assert self.levels is not None
        hits = [
            i for i, lev in enumerate(self.levels) if level is not None and math.isclose(lev, level)
        ]
        if not hits:
            raise KeyError(
                f"no statistics of {self.name!r} at level {level}; fitted levels: {self.levels}"
            )
        return self.mean[hits[0]], self.std[hits[0]]


@dataclass(frozen=True)
class FieldNormaliser:
    """Per-variable (optionally per-level) affine normalisation of gridded fields.

    ``normalise(u) = (u − m_c) / s_c`` and ``denormalise(z) = s_c z + m_c`` for each
    channel c (a variable, or a variable at one level), with the area-weighted training
    statistics of :meth:`fit` (see the module docstring).

    Attributes:
        variables: the statistics, one :class:`VariableStats` per variable, in order.
        time: first and last training time (ISO strings) the statistics were fitted on.
        weighting: ``"area"`` (cos latitude) or ``"none"``.
    """

    KIND: ClassVar[str] = "field"

    variables: tuple[VariableStats, ...]
    time: tuple[str, str] | None = None
    weighting: str = "area"

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        if not self.variables:
            raise ValueError("a FieldNormaliser needs at least one variable")
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variable names in a FieldNormaliser: {names}")
        if self.weighting not in ("area", "none"):
            raise ValueError(f"weighting must be 'area' or 'none', got {self.weighting!r}")
        if self.time is not None:
            object.__setattr__(self, "time", tuple(str(t) for t in self.time))

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        ds: xr.Dataset,
        variables: str | Sequence[str] | None = None,
        *,
        time: Any = None,
        per_level: bool = True,
        weighting: str = "area",
    ) -> FieldNormaliser:
        """Fit on the training slice ``ds.sel(time=time)`` with one ``dask.compute``.

        Args:
            ds: a dataset in the hdm schema (dask-backed or in memory).
            variables: names to fit (default: every data variable).
            time: the training time selection (a slice of ISO strings, usually); only
                these time steps are read. None uses every time step.
            per_level: separate statistics per pressure level for leveled variables.
            weighting: ``"area"`` (cos latitude) or ``"none"``.

        Raises:
            KeyError: a variable not in ``ds`` (the present ones listed).
            ValueError: an empty time selection, no finite value, or zero variance.
        """
        names = [variables] if isinstance(variables, str) else list(variables or ds.data_vars)
        missing = [v for v in names if v not in ds.data_vars]
        if missing:
            raise KeyError(
                f"variable(s) {missing} not in the dataset; present: {list(ds.data_vars)}"
            )
        if weighting not in ("area", "none"):
            raise ValueError(f"weighting must be 'area' or 'none', got {weighting!r}")
        train = ds[names]
        if time is not None:
            if TIME not in train.dims:
                raise ValueError(f"time={time!r} given but the dataset has no {TIME!r} dimension")
            train = train.sel({TIME: time})
        if TIME in train.dims and train.sizes[TIME] == 0:
            span = (
                f"{ds[TIME].values[0]} to {ds[TIME].values[-1]}" if ds.sizes.get(TIME) else "none"
            )
            raise ValueError(f"the training time selection {time!r} is empty (data: {span})")
        sums = {}
        for name in names:
            x = train[name].astype(np.float64)
            keep = [LEVEL] if (per_level and LEVEL in x.dims) else []
            dims = [d for d in x.dims if d not in keep]
            finite = np.isfinite(x)
            w = lat_weights(train) if (weighting == "area" and LAT in x.dims) else xr.ones_like(x)
            wf = xr.where(finite, w, 0.0)
            x0 = x.fillna(0.0)
            sums[name] = ((wf).sum(dims), (wf * x0).sum(dims), (wf * x0 * x0).sum(dims))
        (computed,) = dask.compute(sums)
        stats = []
        for name in names:
            s0, s1, s2 = (
                np.atleast_1d(np.asarray(a.values, dtype=np.float64)) for a in computed[name]
            )
            if not np.all(s0 > 0):
                raise ValueError(f"cannot fit {name!r}: no finite value in the training slice")
            mean = s1 / s0
            var = np.maximum(s2 / s0 - mean * mean, 0.0)
            std = np.sqrt(var)
            zero = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
            if zero.any():
                raise ValueError(
                    f"cannot fit {name!r}: std is 0 (constant field) in the training slice"
                )
            levels = (
                tuple(float(v) for v in train[name][LEVEL].values)
                if LEVEL in train[name].dims
                else None
            )
            stats.append(
                VariableStats(name, tuple(mean), tuple(std), levels, train[name].attrs.get("units"))
            )
        span = None
        if TIME in train.dims:
            t = train[TIME].values
            span = (str(pd.Timestamp(t[0]).isoformat()), str(pd.Timestamp(t[-1]).isoformat()))
        return cls(tuple(stats), span, weighting)

    def with_vector(self, east: str, north: str) -> FieldNormaliser:
        """This normaliser with the single-level variables ``east`` and ``north`` (the
        components of one wind) scaled alike and not shifted: mean 0 and
        s = √((s_e² + m_e² + s_n² + m_n²) / 2), the root mean square wind component. A
        vector field's components must be: a rotation mixes them, and the constant
        −m_e/s_e is not a tangent field on the sphere (it has no limit at the poles), so the
        per-component normalisation leaves the winds outside the range of a spherical Q
        with a vector pair (:class:`~hdm.hilbert.covariance.SphericalCovariance`)."""
        pair = [self.stats(east), self.stats(north)]  # KeyError names the fitted ones
        if any(v.levels is not None for v in pair):
            raise ValueError(
                f"a wind pair ({east}, {north}) is two single-level variables; "
                f"{[v.name for v in pair if v.levels is not None]} are on levels"
            )
        square = sum(v.std[0] ** 2 + v.mean[0] ** 2 for v in pair) / 2
        scale = math.sqrt(square)
        variables = tuple(
            VariableStats(v.name, (0.0,), (scale,), None, v.units) if v.name in (east, north) else v
            for v in self.variables
        )
        return FieldNormaliser(variables, self.time, self.weighting)

    # ---------------------------------------------------------------- channels

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def stats(self, name: str) -> VariableStats:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"no statistics for variable {name!r}; fitted: {list(self.names)}")

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Every fitted channel (variable, level or None), in layout order."""
        return tuple(c for v in self.variables for c in v.channels())

    def channel_stats(
        self, layout: Sequence[Channel] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each of shape (C,), float64, for the channels of ``layout``."""
        layout = self.channels if layout is None else tuple(layout)
        pairs = [self.stats(name).at(level) for name, level in layout]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    # ------------------------------------------------------------ (de)normalise

    def normalise(
        self, x: Any, layout: Sequence[Channel] | None = None, channel_dim: int = -3
    ) -> Any:
        """Physical → normalised units.

        Args:
            x: an ``xr.Dataset`` (every fitted variable present is normalised, lazily if
               dask-backed; others are left alone), or a torch tensor / numpy array
               whose axis ``channel_dim`` holds the channels of ``layout``
               (default: all fitted channels), e.g. (batch, C, lat, lon).

        Returns:
            the same kind of object; xarray variables get ``units = "1"``.
        """
        return self._apply(x, layout, channel_dim, inverse=False)

    def denormalise(
        self, x: Any, layout: Sequence[Channel] | None = None, channel_dim: int = -3
    ) -> Any:
        """Normalised → physical units (the inverse of :meth:`normalise`)."""
        return self._apply(x, layout, channel_dim, inverse=True)

    def _apply(
        self, x: Any, layout: Sequence[Channel] | None, channel_dim: int, inverse: bool
    ) -> Any:
        if isinstance(x, xr.DataArray):
            name = x.name if x.name is not None else "__da__"
            return self._apply(x.to_dataset(name=name), layout, channel_dim, inverse)[name]
        if isinstance(x, xr.Dataset):
            out = {}
            for v in self.variables:
                if v.name not in x.data_vars:
                    continue
                da = x[v.name]
                mean, std = self._xarray_stats(v, da)
                res = da * std + mean if inverse else (da - mean) / std
                res.attrs = dict(da.attrs)
                if inverse:
                    if v.units is not None:
                        res.attrs["units"] = v.units
                    elif res.attrs.get("units") == "1":
                        del res.attrs["units"]
                else:
                    res.attrs["units"] = "1"
                out[v.name] = res
            return x.assign(out)
        mean, std = self.channel_stats(layout)
        n_channels = mean.size
        if x.shape[channel_dim] != n_channels:
            raise ValueError(
                f"axis {channel_dim} of the input has {x.shape[channel_dim]} channels, the "
                f"layout has {n_channels}: {list(layout or self.channels)}"
            )
        shape = [1] * x.ndim
        shape[channel_dim] = n_channels
        if hasattr(x, "detach"):  # torch: keep dtype, device and autograd
            import torch

            m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(shape)
            s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(shape)
        else:
            x = np.asarray(x)
            dtype = x.dtype if x.dtype.kind == "f" else np.float64
            m, s = mean.astype(dtype).reshape(shape), std.astype(dtype).reshape(shape)
        return x * s + m if inverse else (x - m) / s

    @staticmethod
    def _xarray_stats(v: VariableStats, da: xr.DataArray) -> tuple[Any, Any]:
        dtype = da.dtype if da.dtype.kind == "f" else np.float64
        if len(v.mean) == 1:
            return np.asarray(v.mean[0], dtype), np.asarray(v.std[0], dtype)
        if LEVEL not in da.coords:
            raise ValueError(f"{v.name!r} was fitted per level but the data has no {LEVEL!r}")
        levels = np.atleast_1d(da[LEVEL].values)
        pairs = [v.at(float(lev)) for lev in levels]
        coord = {LEVEL: da[LEVEL].values} if da[LEVEL].ndim else {}
        dims = (LEVEL,) if LEVEL in da.dims else ()
        mean = np.array([p[0] for p in pairs], dtype=dtype).reshape(levels.shape if dims else ())
        std = np.array([p[1] for p in pairs], dtype=dtype).reshape(levels.shape if dims else ())
        return xr.DataArray(mean, dims=dims, coords=coord), xr.DataArray(
            std, dims=dims, coords=coord
        )

    # ------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary with ``"kind": "field"``."""
        return {
            "kind": self.KIND,
            "weighting": self.weighting,
            "time": list(self.time) if self.time is not None else None,
            "variables": [
                {
                    "name": v.name,
                    "mean": list(v.mean),
                    "std": list(v.std),
                    "levels": list(v.levels) if v.levels is not None else None,
                    "units": v.units,
                }
                for v in self.variables
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldNormaliser:
        """Rebuild a normaliser written by :meth:`to_dict`.

        Raises:
            ValueError: not a mapping, a wrong ``kind``, or missing keys.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"FieldNormaliser.from_dict expects a dict, got {type(d).__name__}")
        if d.get("kind") != cls.KIND:
            raise ValueError(
                f"FieldNormaliser.from_dict: wrong kind {d.get('kind')!r}, expected {cls.KIND!r}"
            )
        missing = sorted({"variables"} - d.keys())
        if missing:
            raise ValueError(f"FieldNormaliser.from_dict: missing key(s) {missing}")
        stats = []
        for i, v in enumerate(d["variables"]):
            lacking = sorted({"name", "mean", "std"} - v.keys())
            if lacking:
                raise ValueError(f"FieldNormaliser.from_dict: variable {i} lacks key(s) {lacking}")
            stats.append(
                VariableStats(
                    v["name"], tuple(v["mean"]), tuple(v["std"]), v.get("levels"), v.get("units")
                )
            )
        time = d.get("time")
        return cls(
            tuple(stats), tuple(time) if time is not None else None, d.get("weighting", "area")
        )


def normaliser_from_dict(d: Mapping[str, Any]) -> ScalarNormaliser | FieldNormaliser:
    """Rebuild any normaliser from its ``to_dict`` output, dispatching on ``"kind"``."""
    kinds = {ScalarNormaliser.KIND: ScalarNormaliser, FieldNormaliser.KIND: FieldNormaliser}
    kind = d.get("kind") if isinstance(d, Mapping) else None
    if kind not in kinds:
        raise ValueError(f"unknown normaliser kind {kind!r}; known: {sorted(kinds)}")
    return kinds[kind].from_dict(dict(d))
