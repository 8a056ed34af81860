"""TruncatedSpectralConv: the kept Fourier modes by truncated DFT products."""

from __future__ import annotations

import math

import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from hdm.hilbert.spectral import TruncatedSpectralConv


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max()) if b.abs().max() > 0 else float(a.abs().max())


@pytest.mark.parametrize(
    "modes, shape",
    [
        ((32, 32), (64, 96)),  # the UK grid, mirror-extended
        ((8, 6), (30, 41)),  # odd last axis
        ((6, 6), (12, 6)),  # every column of the half spectrum kept
        ((8,), (33,)),  # 1-D
    ],
)
def test_products_give_neuraloperators_output_and_gradients(modes, shape):
    torch.manual_seed(0)
    layer = TruncatedSpectralConv(3, 4, n_modes=modes)
    x = torch.randn(2, 3, *shape, requires_grad=True)
    assert layer._products_apply(x)
    ours = layer(x)
    reference = SpectralConv.forward(layer, x)
    assert ours.shape == reference.shape == (2, 4, *shape)
    assert _relative(ours, reference) < 1e-5
    weight = layer.weight.tensor
    cotangent = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (x, weight, layer.bias), cotangent)
    expected = torch.autograd.grad(reference, (x, weight, layer.bias), cotangent)
    for got, want in zip(grads, expected):
        assert _relative(got, want) < 1e-5


@pytest.mark.parametrize("shape", [(31, 64), (8, 40)])  # odd first axis; too few rows for 16 modes
def test_cases_outside_the_products_run_neuraloperators_forward(shape):
    torch.manual_seed(0)
    layer = TruncatedSpectralConv(2, 2, n_modes=(16, 16))
    x = torch.randn(1, 2, *shape)
    assert not layer._products_apply(x)
    assert torch.equal(layer(x), SpectralConv.forward(layer, x))


def test_unit_weights_project_onto_the_kept_modes():
    """With weight 1 on every kept mode and no bias the layer is the orthogonal projection
    onto the kept frequencies: a field inside the band comes back, one outside vanishes."""
    layer = TruncatedSpectralConv(1, 1, n_modes=(8, 8), bias=False)
    with torch.no_grad():
        layer.weight.tensor.copy_(torch.ones_like(layer.weight.tensor))
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(96.0), indexing="ij")
    inside = torch.cos(2 * math.pi * 3 * rows / 64) * torch.sin(2 * math.pi * 2 * cols / 96)
    outside = torch.cos(2 * math.pi * 10 * cols / 96) + torch.sin(2 * math.pi * 20 * rows / 64)
    with torch.no_grad():
        kept = layer(inside[None, None])[0, 0]
        dropped = layer(outside[None, None])[0, 0]
    assert torch.allclose(kept, inside, atol=1e-5)
    assert float(dropped.abs().max()) < 1e-5


def test_state_dict_is_neuraloperators():
    torch.manual_seed(0)
    ours = TruncatedSpectralConv(2, 2, n_modes=(8, 8))
    theirs = SpectralConv(2, 2, n_modes=(8, 8))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 2, 16, 20)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert _relative(ours(x), theirs(x)) < 1e-5


def test_products_stay_in_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    layer = TruncatedSpectralConv(2, 2, n_modes=(8, 8))
    x = torch.randn(1, 2, 16, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = layer(x)
    assert cast.dtype == torch.float32
    assert _relative(cast, layer(x)) < 1e-6
