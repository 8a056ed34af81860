"""The ``.hdm`` xarray accessor: tensors in and out, and the grid of a dataset.

Registered on ``import hdm.data`` for both ``xr.Dataset`` and ``xr.DataArray``::

    x = ds.hdm.to_tensor(["t2m", "q"])       # torch tensor (time, C, lat, lon)
    ds2 = ds.hdm.from_tensor(x, ["t2m", "q"])  # back, with ds's coords and attrs
    grid = ds.hdm.grid                        # hdm.hilbert.grids.LatLonGrid

Channel layout (:func:`channel_layout`): the variables in the order given, a variable
without ``level`` being one channel and a variable with ``level`` one channel per level
(ascending, as stored), e.g. ``[("t2m", None), ("q", 500.0), ("q", 850.0)]``. A tensor
has the shape (*lead, C, lat, lon), where the lead dims are the variables' other dims
in the schema order (``member``, ``sample``, ``time``; see
:data:`hdm.data.schema.DIM_ORDER`); all variables must share them. ``to_tensor`` keeps
the data's dtype unless one is asked for, so ``from_tensor(to_tensor(ds))`` is exact.

``grid`` is the :class:`~hdm.hilbert.grids.LatLonGrid` through the first and last
latitude and longitude with the dataset's numbers of points, periodic in longitude when
n_lon·Δλ = 360°. Coordinates must lie on that regular grid to within ``rtol`` = 5 % of
the spacing (area-weighted block centres of :func:`hdm.data.coarsen.coarse_grain` are a
few percent off a regular line near the poles; a Gaussian grid's latitudes are not),
else a ValueError names the coordinate and the worst index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.array
import numpy as np
import torch
import xarray as xr

from hdm.data.schema import DIM_ORDER, LAT, LEVEL, LON, MEMBER
from hdm.hilbert.grids import GlobalGrid, LatLonGrid

__all__ = [
    "HdmDataArrayAccessor",
    "HdmDatasetAccessor",
    "channel_layout",
    "from_tensor",
    "grid_of",
    "stack_channels",
    "to_tensor",
]

Channel = tuple[str, float | None]
_SPATIAL = (LEVEL, LAT, LON)


def _names(ds: xr.Dataset, variables: str | Sequence[str] | None) -> list[str]:
    names = [variables] if isinstance(variables, str) else list(variables or ds.data_vars)
    missing = [v for v in names if v not in ds.data_vars]
    if missing:
        raise KeyError(f"variable(s) {missing} not in the dataset; present: {list(ds.data_vars)}")
    if not names:
        raise ValueError("no data variable to convert")
    return names


def _lead_dims(ds: xr.Dataset, names: Sequence[str]) -> tuple[str, ...]:
    leads = []
    for name in names:
        var = ds[name]
        for d in (LAT, LON):
            if d not in var.dims:
                raise ValueError(f"variable {name!r} has no {d!r} dimension (dims {var.dims})")
        lead = tuple(d for d in var.dims if d not in _SPATIAL)
        order = {d: i for i, d in enumerate(DIM_ORDER)}
        leads.append(tuple(sorted(lead, key=lambda d: order.get(d, -1))))
    if len(set(leads)) != 1:
        detail = ", ".join(f"{n}: {lead}" for n, lead in zip(names, leads))
        raise ValueError(f"the variables do not share their leading dims ({detail})")
    return leads[0]


def channel_layout(
    ds: xr.Dataset, variables: str | Sequence[str] | None = None
) -> tuple[Channel, ...]:
    """The channels (variable, level or None) of ``variables`` in ``ds``, in tensor order."""
    out: list[Channel] = []
    for name in _names(ds, variables):
        var = ds[name]
        if LEVEL in var.dims:
            out.extend((name, float(lev)) for lev in var[LEVEL].values)
        else:
            out.append((name, None))
    return tuple(out)


def stack_channels(ds: xr.Dataset, variables: str | Sequence[str] | None = None) -> xr.DataArray:
    """The variables as one DataArray (*lead, channel, lat, lon), lazy if ``ds`` is.

    The ``channel`` dim carries the coordinates ``variable`` (str) and
    ``channel_level`` (hPa, NaN for variables without level).
    """
    names = _names(ds, variables)
    lead = _lead_dims(ds, names)
    arrays = []
    for name in names:
        var = ds[name]
        if LEVEL in var.dims:
            arrays.append(var.transpose(*lead, LEVEL, LAT, LON).data)
        else:
            data = var.transpose(*lead, LAT, LON).data
            arrays.append(data[..., None, :, :])
    is_dask = any(isinstance(a, dask.array.Array) for a in arrays)
    dtypes = {np.dtype(a.dtype) for a in arrays}
    dtype = np.result_type(*dtypes)
    arrays = [a.astype(dtype) if a.dtype != dtype else a for a in arrays]
    data = dask.array.concatenate(arrays, axis=-3) if is_dask else np.concatenate(arrays, axis=-3)
    layout = channel_layout(ds, names)
    coords: dict[str, Any] = {d: ds[d] for d in (*lead, LAT, LON) if d in ds.coords}
    coords["variable"] = ("channel", [c[0] for c in layout])
    coords["channel_level"] = ("channel", [np.nan if c[1] is None else c[1] for c in layout])
    return xr.DataArray(data, dims=(*lead, "channel", LAT, LON), coords=coords)


def to_tensor(
    ds: xr.Dataset,
    variables: str | Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The variables as a tensor (*lead, C, lat, lon), e.g. (time, C, lat, lon).

    Computes the data (it is the one place where a dask-backed dataset is loaded, so
    select first). ``dtype`` None keeps the data's dtype (exact round trips).
    """
    values = np.ascontiguousarray(stack_channels(ds, variables).values)
    tensor = torch.from_numpy(values)
    return tensor if dtype is None else tensor.to(dtype)


def from_tensor(
    tensor: torch.Tensor | np.ndarray,
    template: xr.Dataset,
    variables: str | Sequence[str] | None = None,
    *,
    extra_dims: Sequence[str] = (MEMBER,),
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A dataset from a tensor laid out as ``to_tensor(template, variables)``.

    Args:
        tensor: shape (*extra, *lead, C, lat, lon) (torch, any device, or numpy).
        template: the dataset whose variables, coords and attributes are reused.
        variables: the variables (and hence the channel layout) of the tensor.
        extra_dims: names of leading dims the template lacks (e.g. ensemble members,
            given integer coordinates 0..n-1), outermost first.
        attrs: dataset attributes to set on top of the template's.

    Returns:
        an ``xr.Dataset`` with the tensor's dtype, the template's coordinates and the
        variables' attributes.

    Raises:
        ValueError: if the tensor's shape does not match (the expected shape is named).
    """
    names = _names(template, variables)
    lead = _lead_dims(template, names)
    layout = channel_layout(template, names)
    if isinstance(tensor, torch.Tensor):
        values = tensor.detach().cpu().numpy()
    else:
        values = np.asarray(tensor)
    core = (
        *(template.sizes[d] for d in lead),
        len(layout),
        template.sizes[LAT],
        template.sizes[LON],
    )
    n_extra = values.ndim - len(core)
    if n_extra < 0 or n_extra > len(extra_dims) or tuple(values.shape[n_extra:]) != core:
        labels = ", ".join([*lead, "C", LAT, LON])
        raise ValueError(
            f"tensor of shape {tuple(values.shape)} does not match the template: expected "
            f"({labels}) = {core}, with up to {len(extra_dims)} extra leading dim(s) "
            f"{list(extra_dims)}"
        )
    extra = tuple(extra_dims[len(extra_dims) - n_extra :]) if n_extra else ()
    coords: dict[str, Any] = {
        c: template[c] for c in template.coords if set(template[c].dims) <= {*lead, LEVEL, LAT, LON}
    }
    for i, d in enumerate(extra):
        coords[d] = (d, np.arange(values.shape[i]))
    out = {}
    start = 0
    for name in names:
        var = template[name]
        n = var.sizes[LEVEL] if LEVEL in var.dims else 1
        block = values[..., start : start + n, :, :]
        start += n
        if LEVEL in var.dims:
            dims = (*extra, *lead, LEVEL, LAT, LON)
        else:
            dims, block = (*extra, *lead, LAT, LON), block[..., 0, :, :]
        da = xr.DataArray(block, dims=dims, attrs=dict(var.attrs))
        order = [*extra, *(d for d in var.dims if d in dims)]
        out[name] = da.transpose(*order)
    ds = xr.Dataset(out, coords=coords, attrs=dict(template.attrs))
    if attrs:
        ds.attrs.update(attrs)
    return ds


def _regular_axis(values: np.ndarray, name: str, rtol: float) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        raise ValueError(f"coordinate {name!r} needs at least 2 points for a grid, got {v.size}")
    step = (v[-1] - v[0]) / (v.size - 1)
    if not step > 0:
        raise ValueError(f"coordinate {name!r} must be ascending for a grid")
    dev = np.abs(v - (v[0] + step * np.arange(v.size)))
    worst = int(np.argmax(dev))
    if dev[worst] > rtol * step:
        raise ValueError(
            f"coordinate {name!r} is not regularly spaced: index {worst} is {v[worst]:g}, "
            f"{dev[worst]:.3g} away from the regular spacing {step:g} "
            f"(tolerance {rtol:g} × spacing)"
        )
    return float(v[0]), float(v[-1])


def grid_of(obj: xr.Dataset | xr.DataArray, rtol: float = 0.05) -> LatLonGrid | GlobalGrid:
    """The grid of ``obj``'s ``lat``/``lon`` (see the module docstring): a
    :class:`~hdm.hilbert.grids.GlobalGrid` when it is the whole globe in the equiangular
    layout with both poles (latitudes −90 … 90, longitudes round the circle from −180, as
    ERA5's 1° and 0.25° grids open), else a :class:`LatLonGrid` (regional boxes, and
    longitude bands or cell-centred global grids, which are not spherical grids here)."""
    for d in (LAT, LON):
        if d not in obj.coords:
            raise ValueError(f"no {d!r} coordinate for a grid; coordinates: {list(obj.coords)}")
    lat0, lat1 = _regular_axis(obj[LAT].values, LAT, rtol)
    lon0, lon1 = _regular_axis(obj[LON].values, LON, rtol)
    n_lat, n_lon = obj.sizes[LAT], obj.sizes[LON]
    dlon = (lon1 - lon0) / (n_lon - 1)
    if np.isclose(n_lon * dlon, 360.0, rtol=1e-6):
        poles = np.isclose(lat0, -90.0) and np.isclose(lat1, 90.0)
        if poles and np.isclose(lon0, -180.0):
            return GlobalGrid.make(n_lat, n_lon)
        return LatLonGrid.regular(lat=(lat0, lat1), lon=(lon0, lon0 + 360.0), shape=(n_lat, n_lon))
    return LatLonGrid.regular(lat=(lat0, lat1), lon=(lon0, lon1), shape=(n_lat, n_lon))


def _as_dataset(da: xr.DataArray) -> tuple[xr.Dataset, str]:
    name = str(da.name) if da.name is not None else "data"
    return da.to_dataset(name=name), name


@xr.register_dataset_accessor("hdm")
class HdmDatasetAccessor:
    """``ds.hdm``: :meth:`to_tensor`, :meth:`from_tensor`, :attr:`grid`, :meth:`channels`."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def to_tensor(
        self, variables: str | Sequence[str] | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """See :func:`to_tensor`: (*lead, C, lat, lon)."""
        return to_tensor(self._ds, variables, dtype)

    def from_tensor(
        self,
        tensor: torch.Tensor | np.ndarray,
        variables: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> xr.Dataset:
        """See :func:`from_tensor`, with this dataset as the template."""
        return from_tensor(tensor, self._ds, variables, **kwargs)

    def channels(self, variables: str | Sequence[str] | None = None) -> tuple[Channel, ...]:
        """See :func:`channel_layout`."""
        return channel_layout(self._ds, variables)

    @property
    def grid(self) -> LatLonGrid:
        """See :func:`grid_of` (5 % tolerance)."""
        return grid_of(self._ds)


@xr.register_dataarray_accessor("hdm")
class HdmDataArrayAccessor:
    """``da.hdm``: the same as for a dataset holding this one variable: :meth:`to_tensor`,
    :meth:`from_tensor`, :attr:`grid`, :meth:`channels` (which take no variables: the
    variable is this DataArray, named by its name, or ``"data"`` when it has none)."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def to_tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(*lead, C, lat, lon), C = 1 or the number of levels."""
        ds, name = _as_dataset(self._da)
        return to_tensor(ds, name, dtype)

    def from_tensor(self, tensor: torch.Tensor | np.ndarray, **kwargs: Any) -> xr.DataArray:
        """A DataArray like this one from a tensor laid out as :meth:`to_tensor`."""
        ds, name = _as_dataset(self._da)
        return from_tensor(tensor, ds, name, **kwargs)[name].rename(self._da.name)

    def channels(self) -> tuple[Channel, ...]:
        """See :func:`channel_layout`: ``((name, None),)`` without ``level``, else one
        ``(name, level)`` per level."""
        ds, name = _as_dataset(self._da)
        return channel_layout(ds, name)

    @property
    def grid(self) -> LatLonGrid:
        """See :func:`grid_of` (5 % tolerance)."""
        return grid_of(self._da)
