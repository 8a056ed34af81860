"""``repr(Prior)``: one short line of what the model is, not its weights or statistics."""

from __future__ import annotations

from hdm.domains.shipped import shipped_checkpoint
from hdm.downscaling.prior import load_prior


def test_the_repr_of_a_prior_is_one_short_line_of_what_it_is():
    path = shipped_checkpoint("uk_t2m")
    prior = load_prior(path)
    text = repr(prior)
    assert len(text) < 400 and len(text.splitlines()) == 1, text
    assert "tensor(" not in text and "Conv" not in text and "Normaliser" not in text
    assert text.startswith("Prior(variables=['t2m'], ")
    assert prior.grid.describe() in text
    assert "networks=4" in text  # the shipped model is an ensemble of 4 networks
    assert f"gaussian=rank {prior.gaussian.rank}, ς*={prior.gaussian.varsigma_star:.3g}" in text
    assert f"path={str(path)!r}" in text
    assert str(prior) == text


def test_the_repr_names_the_levels_of_a_multi_level_prior():
    prior = load_prior(shipped_checkpoint("rhine_levels"))
    text = repr(prior)
    assert len(text) < 400, text
    assert "variables=['u', 'v', 'q'], levels=[300, 500, 700, 850, 925, 1000] hPa" in text
    assert "gaussian=None" in text and "networks=1" in text
