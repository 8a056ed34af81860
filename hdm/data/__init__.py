"""hdm.data: xarray + dask in, tensors for training, xarray + zarr/netCDF out.

- :mod:`hdm.data.schema`: dimension names, units conventions, :func:`mock_fields`.
- :mod:`hdm.data.open`: :func:`open_fields` (lazy, conventions normalised once).
- :mod:`hdm.data.normalization`: :class:`ScalarNormaliser`, :class:`FieldNormaliser`.
- :mod:`hdm.data.coarsen`: :func:`coarse_grain` (area-weighted block means).
- :mod:`hdm.data.torch_dataset`: :class:`FieldDataset` (streams from dask).
- :mod:`hdm.data.stores`: resumable zarr ensembles, CF netCDF, :func:`open_store`.
- :mod:`hdm.data.accessor`: the ``.hdm`` accessor, registered on import of this package.
"""

from hdm.data import accessor as _accessor  # noqa: F401  (registers ds.hdm / da.hdm)
