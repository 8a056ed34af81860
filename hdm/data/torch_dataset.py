"""``FieldDataset``: stream training samples from a lazy (dask) dataset into torch.

One sample is one step along ``sample_dim`` (default ``time``): the variables stacked
as channels (:func:`hdm.data.accessor.channel_layout`), shape (C, lat, lon), float32,
optionally normalised per channel by a fitted
:class:`~hdm.data.normalization.FieldNormaliser` ((x − m_c) / s_c), optionally cut to
a random patch (C, h, w).

Memory: the dataset is never loaded. ``__getitem__`` selects one time step (and the
patch) lazily and computes just that with dask (the ``synchronous`` scheduler by
default: inside DataLoader workers the parallelism comes from the workers, and a
thread pool per worker would oversubscribe the cores), so reading is bounded by the
chunks one sample touches. For files chunked along time, choose ``chunks={"time": 1}``
(or small) in :func:`hdm.data.open.open_fields` to read only the steps needed.
``__getitems__`` (used by the DataLoader's batch sampler) computes a whole batch in one
dask call, which saves the per-call overhead.

Workers: the object is picklable. ``ds`` may be a dataset or a zero-argument callable
that opens it (e.g. ``functools.partial(open_fields, path, chunks={"time": 1})``):
with a callable, each worker process opens its own copy on first use (no file handle
is shared across ``fork``), which is the robust choice for files; a dataset is pickled
with its dask graph (``spawn``) or inherited (``fork``).

Patches: with ``patch=(h, w)`` the offset of sample i is drawn from
``numpy.random.default_rng([seed, epoch, i])``: the same (seed, epoch, index) always
gives the same patch, whatever the worker or the order; :meth:`set_epoch` gives new
patches each epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import dask
import numpy as np
import torch
import xarray as xr

from hdm.data.accessor import channel_layout, stack_channels
from hdm.data.normalization import FieldNormaliser
from hdm.data.schema import LAT, LON, TIME

__all__ = ["FieldDataset"]


class FieldDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` of (C, lat, lon) float32 tensors, one per time step.

    Args:
        ds: an ``xr.Dataset`` in the hdm schema (dask-backed for streaming), or a
            zero-argument picklable callable returning one (reopened per process).
        variables: the variables to stack as channels (default: all data variables).
        normaliser: a fitted :class:`FieldNormaliser` applied per channel, or None.
        patch: (h, w) random patch size in grid points, or None for the whole grid.
        seed: seed of the patch offsets.
        sample_dim: the dimension indexed by the dataset (``time``, ``sample``, ...).
        dtype: the tensors' dtype.
        scheduler: the dask scheduler used inside ``__getitem__``.

    Raises:
        ValueError: a patch larger than the grid, or no ``sample_dim``.
    """

    def __init__(
        self,
        ds: xr.Dataset | Callable[[], xr.Dataset],
        variables: str | Sequence[str] | None = None,
        normaliser: FieldNormaliser | None = None,
        patch: tuple[int, int] | None = None,
        seed: int = 0,
        *,
        sample_dim: str = TIME,
        dtype: torch.dtype = torch.float32,
        scheduler: str = "synchronous",
    ) -> None:
        self._opener = None if isinstance(ds, xr.Dataset) else ds
        self._ds: xr.Dataset | None = ds if isinstance(ds, xr.Dataset) else None
        self._pid: int | None = None
        self._stacked: xr.DataArray | None = None
        opened = self._dataset()
        self.variables = tuple(
            [variables] if isinstance(variables, str) else variables or opened.data_vars
        )
        self.layout = channel_layout(opened, self.variables)
        if sample_dim not in opened.dims:
            raise ValueError(
                f"no sample dimension {sample_dim!r} in the dataset (dims {dict(opened.sizes)})"
            )
        self.sample_dim = sample_dim
        self.grid_shape = (opened.sizes[LAT], opened.sizes[LON])
        self._length = opened.sizes[sample_dim]
        if patch is not None:
            h, w = (int(p) for p in patch)
            if not (1 <= h <= self.grid_shape[0] and 1 <= w <= self.grid_shape[1]):
                raise ValueError(
                    f"patch {patch} must fit in the grid (lat, lon) = {self.grid_shape}"
                )
            patch = (h, w)
        self.patch = patch
        self.seed = int(seed)
        self.epoch = 0
        self.dtype = dtype
        self.scheduler = scheduler
        self.normaliser = normaliser
        if normaliser is not None:
            mean, std = normaliser.channel_stats(self.layout)
            self._mean, self._std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        if self._opener is not None:  # the main process need not keep its copy open
            self._ds, self._stacked = None, None

    # ----------------------------------------------------------------- state

    def _dataset(self) -> xr.Dataset:
        pid = os.getpid()
        if self._ds is None or (self._opener is not None and self._pid != pid):
            assert self._opener is not None
            self._ds = self._opener()
            self._stacked = None
        self._pid = pid
        return self._ds

    def _data(self) -> xr.DataArray:
        ds = self._dataset()
        if self._stacked is None:
            self._stacked = stack_channels(ds, self.variables)
        return self._stacked

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_stacked"] = None
        if self._opener is not None:
            state["_ds"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Use the patches of ``epoch`` (call before each epoch, in the main process)."""
        self.epoch = int(epoch)

    # --------------------------------------------------------------- samples

    def __len__(self) -> int:
        return self._length

    def patch_offset(self, index: int) -> tuple[int, int]:
        """(row, col) of the patch of sample ``index`` (0, 0 without patches)."""
        if self.patch is None:
            return 0, 0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        r = int(rng.integers(0, self.grid_shape[0] - self.patch[0] + 1))
        c = int(rng.integers(0, self.grid_shape[1] - self.patch[1] + 1))
        return r, c

    def _lazy(self, index: int) -> Any:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} samples")
        index = index % self._length
        sel: dict[str, Any] = {self.sample_dim: index}
        if self.patch is not None:
            r, c = self.patch_offset(index)
            sel[LAT] = slice(r, r + self.patch[0])
            sel[LON] = slice(c, c + self.patch[1])
        return self._data().isel(sel).data

    def _finish(self, values: np.ndarray) -> torch.Tensor:
        x = np.asarray(values)
        if self.normaliser is not None:
            x = (x - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.dtype)

    def __getitem__(self, index: int) -> torch.Tensor:
        (values,) = dask.compute(self._lazy(int(index)), scheduler=self.scheduler)
        return self._finish(values)

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        idx = [int(i) for i in indices]
        if self.patch is not None or not idx:
            values = dask.compute(*[self._lazy(i) for i in idx], scheduler=self.scheduler)
            return [self._finish(v) for v in values]
        # Whole grids: one selection of the sorted distinct steps (a slice when they are
        # contiguous), one small graph, then the samples in the order asked for.
        for i in idx:
            if not -self._length <= i < self._length:
                raise IndexError(f"index {i} out of range for {self._length} samples")
        wanted = np.array([i % self._length for i in idx])
        steps, where = np.unique(wanted, return_inverse=True)
        if steps[-1] - steps[0] + 1 == steps.size:
            sel: Any = slice(int(steps[0]), int(steps[-1]) + 1)
        else:
            sel = steps
        (block,) = dask.compute(
            self._data().isel({self.sample_dim: sel}).data, scheduler=self.scheduler
        )
        return [self._finish(block[k]) for k in where.ravel()]
