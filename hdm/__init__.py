"""hdm: generative downscaling with score-based diffusion models in function space.

Sub-packages (dependencies point one way, ``pipelines -> conditioning, metrics, data,
domains -> hilbert``):

- :mod:`hdm.hilbert`: grids, trace-class covariance operators Q, noise schedules, the
  forward Q-Wiener process, denoisers, the time-conditioned FNO, losses, samplers, training.
- :mod:`hdm.domains`: what is specific to a kind of data (functional curves, atmosphere).
- :mod:`hdm.data`: xarray/dask loading, normalisation and stores.
- :mod:`hdm.metrics`: two-sample tests, probabilistic scores, baselines.
- :mod:`hdm.pipelines`: configs, the ``hdm`` command line, benchmarks.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "downscale"]


def __getattr__(name: str):
    # ``hdm.downscale`` without importing torch at ``import hdm``.
    if name == "downscale":
        from hdm.pipelines.downscale import downscale

        return downscale
    raise AttributeError(f"module 'hdm' has no attribute {name!r}")
