"""TimeConditionedSFNO: the score network on the whole sphere.

The architecture of :class:`hdm.hilbert.networks.TimeConditionedFNO` with spherical
convolutions in place of the Fourier layers (Bonev et al. 2023, SFNO):

    h_0 = P([x, s(grid), sin φ])                            lifting, pointwise
    h_{l+1} = h_l + GELU( (1 + a_l(τ)) ⊙ (K_l h_l + W_l h_l) + b_l(τ) )
    F = Π(h_L)                                              projection, pointwise MLP

- K_l, ``weights="degree"``: neuraloperator's ``SphericalConv`` with its
  Driscoll–Healy contraction: the spherical-harmonic transform of h (torch-harmonics),
  one complex weight per (input channel, output channel, degree ℓ < ``n_degrees``)
  shared by every order m, the inverse transform. A real weight that depends on ℓ alone
  is a convolution with a zonal kernel, which commutes with every rotation of the
  sphere: no pole is special and there is no seam at the date line, where a planar FFT
  sees one.
- K_l, ``weights="degree_order"`` (:class:`DegreeOrderConv`): one complex weight per
  (input, output, ℓ, m), m ≤ ℓ < ``n_degrees`` (the "diagonal" operator of Bonev et al.).
  It commutes with rotations about the polar axis only — the symmetry a rotating planet
  keeps — and can hold what a weight of ℓ alone cannot: a linear map that depends on the
  order, like the zonal derivative ∂/∂λ (i·m per coefficient) that relates a height
  anomaly to its geostrophic meridional wind. It was built because the degree weights
  downscale the shallow-water winds worse than a planar FNO does; with 8× the
  parameters it did no better there (BENCHMARKS.md "sphere-downscale"), so the shipped
  prior keeps one weight per degree.
- The only coordinate channel is sin φ (latitude φ), so the network commutes exactly
  with rotations about the polar axis (shifts in longitude by whole grid steps); the
  static fields s(grid) (orography, land fraction), when given, break that symmetry as
  the Earth does.
- τ: per-sample FiLM as in the planar network; W_l pointwise.

Any resolution of the sphere with the network's latitude quadrature works, as long as
it resolves the network's degrees (``n_degrees`` ≤ the grid's
:attr:`~hdm.hilbert.grids.GlobalGrid.max_degree`); anything else is a :class:`GridError`
naming both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from neuralop.layers.channel_mlp import ChannelMLP
from neuralop.layers.spherical_convolution import SphericalConv
from torch import nn

from hdm.hilbert.grids import GlobalGrid, Grid
from hdm.hilbert.networks import GridError, sinusoidal_embedding, time_modulation

__all__ = ["SFNO_WEIGHTS", "DegreeOrderConv", "TimeConditionedSFNO"]

#: the spectral weights of a TimeConditionedSFNO (module doc)
SFNO_WEIGHTS = ("degree", "degree_order")


class DegreeOrderConv(nn.Module):
    """K h = SHT⁻¹(W ⋅ SHT h) with one complex weight W[i, o, ℓ, m] per input and output
    channel, degree ℓ < ``n_degrees`` and order m ≤ ℓ (module doc).

    SHT is torch-harmonics' real transform with orthonormal harmonics on the input's own
    grid (made once per grid size), so the coefficients, and K h, are those of the same
    function on every resolution that resolves ``n_degrees``. Rows may come in either
    latitude order as long as it is always the same (a north–south flip multiplies
    coefficient (ℓ, m) by (−1)^(ℓ+m), which the weights absorb). Initial weights as
    neuraloperator's: N(0, 2/(in + out)).
    """

    def __init__(self, in_channels: int, out_channels: int, n_degrees: int, quadrature: str):
        super().__init__()
        std = (2.0 / (in_channels + out_channels)) ** 0.5
        self.weight = nn.Parameter(
            std * torch.randn(in_channels, out_channels, n_degrees, n_degrees, 2)
        )
        self.n_degrees = n_degrees
        self.quadrature = quadrature
        self._transforms: dict = {}

    def transforms(self, shape: tuple[int, int], x: torch.Tensor) -> tuple[nn.Module, nn.Module]:
        """The forward and inverse transforms of ``shape`` on x's device and dtype."""
        key = (shape, x.device, x.dtype)
        if key not in self._transforms:
            import torch_harmonics as th

            nlat, nlon = shape
            size = {"lmax": self.n_degrees, "mmax": self.n_degrees, "norm": "ortho"}
            forward = th.RealSHT(nlat, nlon, grid=self.quadrature, **size)
            inverse = th.InverseRealSHT(nlat, nlon, grid=self.quadrature, **size)
            self._transforms[key] = (
                forward.to(device=x.device, dtype=x.dtype),
                inverse.to(device=x.device, dtype=x.dtype),
            )
        return self._transforms[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward, inverse = self.transforms(tuple(x.shape[-2:]), x)
        coeff = forward(x)  # (batch, in, ℓ, m), complex
        weight = torch.view_as_complex(self.weight).to(coeff.dtype)
        return inverse(torch.einsum("bilm,iolm->bolm", coeff, weight))


class TimeConditionedSFNO(nn.Module):
    """F(x, τ, grid) on global grids (see module docstring).

    Parameters
    ----------
    channels: data channels C (input and output).
    static_channels: static input fields K (0: none).
    width: hidden channels. n_degrees: spherical-harmonic degrees ℓ kept by each
    spherical convolution. n_layers: blocks. time_dim: width of the time embedding.
    quadrature: the latitude quadrature of the grids it takes ("equiangular" or
    "legendre-gauss", :class:`~hdm.hilbert.grids.GlobalGrid`). weights: "degree" (one
    weight per ℓ, neuraloperator's SphericalConv) or "degree_order" (per (ℓ, m),
    :class:`DegreeOrderConv`).
    """

    def __init__(
        self,
        channels: int = 1,
        width: int = 32,
        n_degrees: int = 16,
        n_layers: int = 4,
        time_dim: int = 64,
        static_channels: int = 0,
        quadrature: str = "equiangular",
        weights: str = "degree",
    ):
        super().__init__()
        if weights not in SFNO_WEIGHTS:
            raise ValueError(f"weights must be one of {SFNO_WEIGHTS}, got {weights!r}")
        self.config = {
            "kind": "sfno",
            "channels": channels,
            "width": width,
            "n_degrees": n_degrees,
            "n_layers": n_layers,
            "time_dim": time_dim,
            "static_channels": static_channels,
            "quadrature": quadrature,
            "weights": weights,
        }
        self.channels = channels
        self.static_channels = static_channels
        self.n_degrees = n_degrees
        self.quadrature = quadrature
        self.time_dim = time_dim
        inputs = channels + static_channels + 1
        self.lift = ChannelMLP(inputs, width, hidden_channels=width, n_layers=2, n_dim=2)
        self.spectral = nn.ModuleList(
            [
                DegreeOrderConv(width, width, n_degrees, quadrature)
                if weights == "degree_order"
                else SphericalConv(
                    width,
                    width,
                    n_modes=(n_degrees, 2 * n_degrees),
                    sht_grids=quadrature,
                    implementation="reconstructed",
                    factorization=None,
                )
                for _ in range(n_layers)
            ]
        )
        self.pointwise = nn.ModuleList([nn.Conv2d(width, width, 1) for _ in range(n_layers)])
        self.time_mlp, self.film = time_modulation(time_dim, width, n_layers)
        self.project = ChannelMLP(width, channels, hidden_channels=2 * width, n_layers=2, n_dim=2)

    def check_input(self, x: torch.Tensor, grid: Grid) -> None:
        """GridError unless ``x`` is (batch, C, *grid.shape) on a global grid with the
        network's quadrature that resolves its degrees."""
        if not isinstance(grid, GlobalGrid):
            raise GridError(
                f"this spherical model takes global grids, got {grid.describe()}; a regional "
                "box takes a TimeConditionedFNO"
            )
        if grid.quadrature != self.quadrature:
            raise GridError(
                f"this model was built for {self.quadrature} latitudes, got a "
                f"{grid.quadrature} grid ({grid.describe()})"
            )
        if grid.max_degree < self.n_degrees:
            raise GridError(
                f"{grid.describe()} resolves degrees ℓ < {grid.max_degree}; the model keeps "
                f"ℓ < {self.n_degrees}: sample on a grid of at least {self.n_degrees} "
                f"latitudes and {2 * (self.n_degrees - 1)} longitudes"
            )
        if x.ndim != 4 or x.shape[1] != self.channels or tuple(x.shape[2:]) != grid.shape:
            raise GridError(
                f"expected fields of shape (batch, {self.channels}, *{grid.shape}), "
                f"got {tuple(x.shape)}"
            )

    def forward(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        grid: Grid,
        statics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """F(x, τ) on ``grid``: x (batch, C, nlat, nlon), τ (batch,), ``statics``
        (K, nlat, nlon) when the model has static channels."""
        self.check_input(x, grid)
        if tau.shape != (x.shape[0],):
            raise GridError(
                f"expected one noise level per field, shape ({x.shape[0]},), got {tuple(tau.shape)}"
            )
        if (statics is None) != (self.static_channels == 0):
            raise GridError(
                f"this model takes {self.static_channels} static input field(s); "
                f"got {0 if statics is None else statics.shape[0]}"
            )
        batch = x.shape[0]
        lat = torch.deg2rad(torch.as_tensor(grid.coords()[0], dtype=x.dtype, device=x.device))
        sin_lat = torch.sin(lat)[:, None].expand(grid.shape)
        inputs = [x]
        if statics is not None:
            inputs.append(statics.to(dtype=x.dtype, device=x.device).expand(batch, -1, *grid.shape))
        inputs.append(sin_lat.expand(batch, 1, *grid.shape))
        h = self.lift(torch.cat(inputs, dim=1))
        emb = self.time_mlp(sinusoidal_embedding(tau, self.time_dim).to(x.dtype))
        for spectral, pointwise, film in zip(self.spectral, self.pointwise, self.film):
            scale, shift = film(emb).chunk(2, dim=1)
            z = spectral(h) + pointwise(h)
            h = h + F.gelu((1 + scale[:, :, None, None]) * z + shift[:, :, None, None])
        return self.project(h)
