"""hdm: generative downscaling with score-based diffusion models in function space.

The public API (imported lazily: ``import hdm`` loads neither torch nor xarray):

- :func:`open_fields`: gridded netCDF/zarr/GRIB files as a lazy, normalised ``xr.Dataset``.
- :func:`load_prior`: a trained gridded model (``model.pt``) as a ``Prior``.
- :func:`downscale`: coarse fields + station observations → posterior ensembles.
- :func:`inflate_ensemble`: widen a stored ensemble's unobserved spread without redrawing.
- :func:`train`: train a model from a YAML config (what ``hdm train`` runs).
- :func:`sample`: draw functions from a trained model on any grid (``hdm sample``).
- :func:`evaluate_downscale`: score an ensemble against the truth and the baselines.
- :func:`read_stations`: station observations from CSV tables or IGRA2 files.

Sub-packages, dependencies pointing one way (``pipelines -> downscaling -> conditioning,
metrics, domains, data -> hilbert``): :mod:`hdm.hilbert` (function-space maths, torch
only), :mod:`hdm.data` (xarray/dask in and out), :mod:`hdm.domains` (kinds of data),
:mod:`hdm.metrics` (scores over xarray), :mod:`hdm.conditioning` (posterior sampling on
tensors), :mod:`hdm.downscaling` (the product's core), :mod:`hdm.pipelines` (configs,
batch jobs, the ``hdm`` command line).
"""

from hdm._version import __version__

#: public name -> the module that defines it
_PUBLIC = {
    "open_fields": "hdm.data.open",
    "load_prior": "hdm.downscaling.prior",
    "downscale": "hdm.downscaling.core",
    "inflate_ensemble": "hdm.downscaling.core",
    "train": "hdm.pipelines.train",
    "sample": "hdm.pipelines.sample",
    "evaluate_downscale": "hdm.pipelines.evaluate",
    "read_stations": "hdm.domains.stations",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'hdm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
