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

Per-variable normalisers fitted with dask on large fields belong in this module too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import xarray as xr

__all__ = ["ScalarNormaliser"]


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
