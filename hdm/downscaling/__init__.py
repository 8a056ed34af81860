"""The product's core in Python: a trained prior + coarse fields + stations → ensembles.

- :mod:`hdm.downscaling.prior`: :class:`Prior`, :func:`load_prior`, :func:`target_grid`.
- :mod:`hdm.downscaling.config`: :class:`EnsembleConfig`, how members are drawn.
- :mod:`hdm.downscaling.inputs`: observation operators and values, time matching.
- :mod:`hdm.downscaling.core`: :func:`downscale`, :func:`inflate_ensemble`.
- :mod:`hdm.downscaling.output`: the ensemble dataset, provenance, writing.
"""
