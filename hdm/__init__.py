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
