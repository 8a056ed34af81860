"""Covariance operators Q: the noise of a Q-Wiener process in function space.

HDM (Lim et al., NeurIPS 2023) replaces the white noise of standard diffusion with a
Gaussian ξ ~ N(0, Q) whose covariance Q is trace-class, so that the noise is a function
and the forward process is well defined in the limit of fine grids.

Conventions
-----------
- Fields on a :class:`~hdm.hilbert.grids.Grid` have shape ``(batch, *grid.shape)``.
- ``apply(g, grid)`` is the action of the *covariance matrix on grid values*,
  (Q g)_i = Σ_j k(x_i, x_j) g_j. This is the convention in which the Q-preconditioned
  score s = Q∇_x log p(x) = (α D(x) − x)/σ² (gradients w.r.t. grid values) is resolution
  independent, and the one the samplers and guidance use.
- Every operator is normalised to unit pointwise variance k(x, x) = 1 (up to the
  spectral truncation of the grid), so the data normalisation and σ_t keep their meaning.
- Kernels are written k(r) = exp(−r²/(2ℓ²)) (squared exponential) and Matérn-ν
  k(r) = 2^{1−ν}/Γ(ν) (√(2ν) r/ℓ)^ν K_ν(√(2ν) r/ℓ), r in the grid's physical units.

Spectral form (:class:`SpectralCovariance`)
------------------------------------------
On the periodic embedding of the grid (period P_j per axis, see ``grids``), Q is
diagonal in the Fourier basis, Q e_k = λ_k e_k with

    λ_k = S(κ_k) / V,   V = Π_j P_j,   κ_k = 2π k / P (physical wavenumbers),

where S is the d-dimensional spectral density of the kernel, normalised so that
k(0) = ∫ S(κ) dκ/(2π)^d = 1:

    squared exponential  S(κ) = (2πℓ²)^{d/2} exp(−ℓ²|κ|²/2)
    Matérn-ν             S(κ) = 2^d π^{d/2} Γ(ν+d/2) (2ν)^ν / (Γ(ν) ℓ^{2ν})
                                · (2ν/ℓ² + |κ|²)^{−(ν+d/2)}

The eigenvalues depend on physical wavenumbers only, never on the number of grid
points, so Q is the *same operator* on every resolution. A draw is

    ξ(x) = Re Σ_k √λ_k (a_k + i b_k) e^{iκ_k·x},   a_k, b_k ~ N(0, 1) i.i.d.,

whose covariance is Σ_k λ_k cos(κ_k·(x−y)) = k_per(x − y), computed with one inverse
FFT: O(N log N). The Nyquist mode of each axis is left out (it changes nature when the
grid is refined). The standard normals are assigned to modes in a canonical order
(by the integer key max_j |k_j|·Π_{i≠j} m_i, then by k), drawn in fixed blocks, so a
grid refined by an integer factor with the same seed gets the same coefficients on all
shared modes: the coarse draw is the spectral truncation of the fine draw.

Other forms
-----------
- :class:`KernelCovariance`: dense Gram matrix on arbitrary points (stations, ragged
  grids), Cholesky with jitter, O(n³): small n only.
- :class:`WhiteNoise`: Q = I on grid values (standard diffusion), for ablations. It is
  not trace-class in the continuum limit, which is the point of the ablation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from hdm.hilbert.devices import draw_device
from hdm.hilbert.grids import Grid, PointSet

_FIRST_BLOCK = 16  # modes in the first generator call; later calls double (see _draw_blocks)


def _draw_blocks(n_modes: int) -> list[int]:
    """Sizes of the generator calls that cover ``n_modes`` modes: 16, 16, 32, 64, …

    The block boundaries do not depend on the grid, so two grids draw identical numbers
    for the modes they share (a fixed call sequence of a seeded generator), while at
    most half of the last block is wasted.
    """
    sizes, total = [], 0
    while total < n_modes:
        size = max(_FIRST_BLOCK, total)
        sizes.append(size)
        total += size
    return sizes


class CovarianceOperator(ABC):
    """A covariance operator Q on fields held on a grid."""

    @abstractmethod
    def sample(
        self,
        n: int,
        grid: Grid,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """n independent draws ξ ~ N(0, Q) on ``grid``, shape (n, *grid.shape), drawn on
        the generator's device (the CPU without one) and returned on ``device`` (default:
        that device)."""

    @abstractmethod
    def apply(self, g: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Q g for g of shape (..., *grid.shape) (covariance matrix on grid values)."""

    def sample_channels(
        self,
        n: int,
        channels: int,
        grid: Grid,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """n draws of ``channels`` fields, shape (n, channels, *grid.shape): independent
        draws of :meth:`sample` per channel (a Q that couples channels overrides it)."""
        xi = self.sample(n * channels, grid, generator=generator, dtype=dtype, device=device)
        return xi.reshape(n, channels, *grid.shape)

    #: True where Q's range is not every field on a grid (:meth:`project_field`)
    restricts_range: bool = False

    def project_field(self, f: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Π f: a field f (..., *grid.shape) with its part outside Q's range removed, so
        that Π Q = Q (every Q-noise draw is left as it is). The identity for a Q of full
        rank (every operator here but a :class:`SphericalCovariance` with a band limit or
        a vector pair)."""
        return f

    def project_covector(self, g: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Πᵀ-like projection of g (..., *grid.shape), a functional on grid values (as Q's
        argument is): the part Q does not see removed, so that Q Π = Q. The identity for
        a Q of full rank."""
        return g

    def dense(self, grid: Grid) -> np.ndarray:
        """The covariance matrix on ``grid``, shape (grid.size, grid.size), float64."""
        eye = torch.eye(grid.size, dtype=torch.float64).reshape(grid.size, *grid.shape)
        cols = torch.cat([self.apply(block, grid) for block in eye.split(512)])
        return cols.reshape(grid.size, grid.size).numpy().T.copy()

    def describe(self) -> str:
        return type(self).__name__

    @abstractmethod
    def to_dict(self) -> dict:
        """A JSON-able description from which :func:`covariance_from_dict` rebuilds it."""


def spectral_density(
    kappa: np.ndarray, kernel: str, lengthscale: float, nu: float, dim: int
) -> np.ndarray:
    """S(|κ|) of a unit-variance stationary kernel in ``dim`` dimensions (see module doc)."""
    ell = float(lengthscale)
    if kernel == "se":
        return (2 * math.pi * ell**2) ** (dim / 2) * np.exp(-0.5 * ell**2 * kappa**2)
    if kernel == "matern":
        log_c = (
            dim * math.log(2)
            + 0.5 * dim * math.log(math.pi)
            + math.lgamma(nu + dim / 2)
            - math.lgamma(nu)
            + nu * math.log(2 * nu)
            - 2 * nu * math.log(ell)
        )
        return np.exp(log_c) * (2 * nu / ell**2 + kappa**2) ** (-(nu + dim / 2))
    raise ValueError(f"unknown kernel {kernel!r}; known: 'se', 'matern'")


def kernel_function(r: np.ndarray, kernel: str, lengthscale: float, nu: float) -> np.ndarray:
    """k(r) of the same unit-variance kernels in physical space (for dense Gram matrices)."""
    r = np.abs(np.asarray(r, dtype=np.float64))
    if kernel == "se":
        return np.exp(-0.5 * (r / lengthscale) ** 2)
    if kernel == "matern":
        from scipy.special import gamma, kv

        z = math.sqrt(2 * nu) * r / lengthscale
        with np.errstate(invalid="ignore"):
            out = 2 ** (1 - nu) / gamma(nu) * z**nu * kv(nu, z)
        return np.where(z == 0, 1.0, out)
    raise ValueError(f"unknown kernel {kernel!r}; known: 'se', 'matern'")


def embedding_factors(grid: Grid, lengthscale: float) -> tuple[int, ...]:
    """Period factor c per axis (P = cL on non-periodic axes): large enough that the
    kernel has decayed (r ≥ 6ℓ) before it wraps around, c = max(2, ⌈1 + 6ℓ/L⌉). It
    depends on ℓ/L only, so every resolution of a domain uses the same embedding."""
    return tuple(
        1 if a.periodic else max(2, math.ceil(1 + 6 * lengthscale / a.length)) for a in grid.axes
    )


def check_kernel(kernel: str, lengthscale: float, nu: float) -> None:
    """Raise ValueError naming a kernel parameter that cannot be used."""
    if kernel not in ("se", "matern"):
        raise ValueError(f"unknown kernel {kernel!r}; known: 'se', 'matern'")
    if not lengthscale > 0:
        raise ValueError(f"lengthscale must be positive, got {lengthscale}")
    if kernel == "matern" and not nu > 0:
        raise ValueError(f"Matérn nu must be positive, got {nu}")


@lru_cache(maxsize=64)
def _spectral_layout(
    grid: Grid, factors: tuple[int, ...]
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """(embedding shape, κ² on the embedding FFT grid, canonical order of modes).

    The order lists the flat indices of all non-Nyquist modes sorted by the integer key
    (max_j |k_j|·Π_{i≠j} m_i, k_1, …, k_d); Nyquist modes are excluded.
    """
    sizes = tuple(a.embedding_size(c) for a, c in zip(grid.axes, factors))
    ks = np.meshgrid(*[a.mode_indices(c) for a, c in zip(grid.axes, factors)], indexing="ij")
    kappas = np.meshgrid(*[a.wavenumbers(c) for a, c in zip(grid.axes, factors)], indexing="ij")
    kappa2 = sum(k**2 for k in kappas)
    total = int(np.prod(sizes))
    scaled = [np.abs(k) * (total // m) for k, m in zip(ks, sizes)]
    shell = np.max(np.stack(scaled), axis=0)
    nyquist = np.zeros(sizes, dtype=bool)
    for k, m in zip(ks, sizes):
        if m % 2 == 0:
            nyquist |= np.abs(k) == m // 2
    keys = [k.ravel() for k in reversed(ks)] + [shell.ravel()]
    order = np.lexsort(keys)
    order = order[~nyquist.ravel()[order]]
    return sizes, kappa2, order


@dataclass(frozen=True)
class SpectralCovariance(CovarianceOperator):
    """Stationary Q diagonal in the Fourier basis of the grid's periodic embedding.

    Parameters: ``kernel`` "se" or "matern", ``lengthscale`` ℓ (grid units), ``nu``
    (Matérn smoothness; ignored for SE). Sampling and ``apply`` cost O(N log N).
    """

    kernel: str = "se"
    lengthscale: float = 0.1
    nu: float = 2.5

    def __post_init__(self) -> None:
        check_kernel(self.kernel, self.lengthscale, self.nu)

    def eigenvalues(self, grid: Grid) -> np.ndarray:
        """λ_k on the embedding FFT grid (shape: embedding sizes), Nyquist modes zero."""
        return _spectral_eigenvalues(self, grid)

    def layout(self, grid: Grid) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
        return _spectral_layout(grid, embedding_factors(grid, self.lengthscale))

    def _eigenvalues(self, grid: Grid) -> np.ndarray:
        factors = embedding_factors(grid, self.lengthscale)
        sizes, kappa2, order = _spectral_layout(grid, factors)
        volume = float(np.prod([a.embedding_period(c) for a, c in zip(grid.axes, factors)]))
        lam = spectral_density(np.sqrt(kappa2), self.kernel, self.lengthscale, self.nu, grid.ndim)
        keep = np.zeros(int(np.prod(sizes)), dtype=bool)
        keep[order] = True
        return np.where(keep.reshape(sizes), lam / volume, 0.0)

    def truncated_variance(self, grid: Grid) -> float:
        """k(0) actually represented on ``grid``: Σ_k λ_k (≤ 1; 1 − this is the truncation)."""
        return float(self.eigenvalues(grid).sum())

    def sample(self, n, grid, generator=None, dtype=torch.float32, device=None):
        sizes, _, order = self.layout(grid)
        where = draw_device(generator)  # drawn and transformed on the generator's device
        sqrt_lam = torch.from_numpy(np.sqrt(self.eigenvalues(grid)).ravel()[order]).to(where)
        draws = torch.cat(
            [
                torch.randn(size, n, 2, generator=generator, dtype=torch.float64, device=where)
                for size in _draw_blocks(len(order))
            ]
        )[: len(order)]
        coeff = torch.complex(draws[..., 0], draws[..., 1]) * sqrt_lam[:, None]
        spectrum = torch.zeros(n, int(np.prod(sizes)), dtype=torch.complex128, device=where)
        spectrum[:, torch.from_numpy(order).to(where)] = coeff.T
        spectrum = spectrum.reshape(n, *sizes)
        dims = tuple(range(1, grid.ndim + 1))
        field = torch.fft.ifftn(spectrum, dim=dims, norm="forward").real
        field = field[(slice(None), *[slice(0, a.n) for a in grid.axes])]
        return field.to(dtype=dtype, device=device).contiguous()

    def apply(self, g: torch.Tensor, grid: Grid) -> torch.Tensor:
        sizes, _, _ = self.layout(grid)
        d = grid.ndim
        dims = tuple(range(-d, 0))
        lam = torch.as_tensor(self.eigenvalues(grid).copy(), device=g.device)
        # Zero-pad non-periodic axes onto the embedding: then the circulant product is the
        # exact action of the embedded kernel matrix restricted to the grid.
        gh = torch.fft.fftn(g.to(torch.float64), s=sizes, dim=dims)
        out = torch.fft.ifftn(gh * lam, dim=dims, norm="forward").real
        out = out[(..., *[slice(0, a.n) for a in grid.axes])]
        return out.to(g.dtype)

    def describe(self) -> str:
        if self.kernel == "se":
            return f"SE(ℓ={self.lengthscale:g})"
        return f"Matérn(ν={self.nu:g}, ℓ={self.lengthscale:g})"

    def to_dict(self) -> dict:
        return {
            "kind": "spectral",
            "kernel": self.kernel,
            "lengthscale": self.lengthscale,
            "nu": self.nu,
        }


@lru_cache(maxsize=32)
def _spectral_eigenvalues(cov: SpectralCovariance, grid: Grid) -> np.ndarray:
    lam = cov._eigenvalues(grid)
    lam.setflags(write=False)
    return lam


@dataclass(frozen=True)
class WhiteNoise(CovarianceOperator):
    """Q = I on grid values: the white noise of standard diffusion (ablation baseline)."""

    def sample(self, n, grid, generator=None, dtype=torch.float32, device=None):
        where = draw_device(generator)
        out = torch.randn(n, *grid.shape, generator=generator, dtype=torch.float64, device=where)
        return out.to(dtype=dtype, device=device)

    def apply(self, g, grid):
        return g

    def dense(self, grid):
        return np.eye(grid.size)

    def describe(self) -> str:
        return "white"

    def to_dict(self) -> dict:
        return {"kind": "white"}


@dataclass(frozen=True)
class KernelCovariance(CovarianceOperator):
    """Dense Gram-matrix covariance K_ij = k(|x_i − x_j|) on the points of any grid or of
    a :class:`~hdm.hilbert.grids.PointSet`.

    Cholesky with a relative ``jitter`` on the diagonal; O(n³) once per grid, O(n²) per
    draw. For small point sets (stations, ragged grids) and as an exact reference for
    the spectral operator.
    """

    kernel: str = "se"
    lengthscale: float = 0.1
    nu: float = 2.5
    jitter: float = 1e-6

    def __post_init__(self) -> None:
        check_kernel(self.kernel, self.lengthscale, self.nu)
        if not self.jitter >= 0:
            raise ValueError(f"jitter must be non-negative, got {self.jitter}")

    def _points(self, grid: Grid | PointSet) -> np.ndarray:
        if isinstance(grid, PointSet):
            return grid.as_array()
        mesh = np.meshgrid(*grid.coords(), indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def dense(self, grid: Grid) -> np.ndarray:
        return _kernel_gram(self, grid)

    def _cholesky(self, grid: Grid) -> np.ndarray:
        return _kernel_cholesky(self, grid)

    def sample(self, n, grid, generator=None, dtype=torch.float32, device=None):
        where = draw_device(generator)
        chol = torch.from_numpy(self._cholesky(grid)).to(where)
        z = torch.randn(n, grid.size, generator=generator, dtype=torch.float64, device=where)
        return (z @ chol.T).reshape(n, *grid.shape).to(dtype=dtype, device=device)

    def apply(self, g, grid):
        k = torch.as_tensor(self.dense(grid), dtype=g.dtype, device=g.device)
        flat = g.reshape(*g.shape[: g.ndim - grid.ndim], grid.size)
        return (flat @ k).reshape(g.shape)

    def describe(self) -> str:
        return f"kernel-{self.kernel}(ℓ={self.lengthscale:g})"

    def to_dict(self) -> dict:
        return {
            "kind": "kernel",
            "kernel": self.kernel,
            "lengthscale": self.lengthscale,
            "nu": self.nu,
            "jitter": self.jitter,
        }


@lru_cache(maxsize=8)
def _kernel_gram(cov: KernelCovariance, grid: Grid) -> np.ndarray:
    pts = cov._points(grid)
    r = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    return kernel_function(r, cov.kernel, cov.lengthscale, cov.nu)


@lru_cache(maxsize=8)
def _kernel_cholesky(cov: KernelCovariance, grid: Grid) -> np.ndarray:
    k = _kernel_gram(cov, grid)
    return np.linalg.cholesky(k + cov.jitter * np.eye(len(k)))


#: degrees summed for the normalisation of a spherical Q (the tail beyond is integrated)
_NORMALISING_DEGREES = 200_000


def _degree_spectrum(degrees: np.ndarray, kernel: str, lengthscale: float, nu: float):
    """The unnormalised λ_ℓ of :class:`SphericalCovariance` at ``degrees``."""
    ell = np.deg2rad(lengthscale)  # on the unit sphere
    lap = degrees * (degrees + 1.0)  # −Δ Y_ℓm = ℓ(ℓ+1) Y_ℓm
    if kernel == "se":
        return np.exp(-0.5 * ell**2 * lap)
    return (2 * nu / ell**2 + lap) ** (-(nu + 1.0))


@lru_cache(maxsize=32)
def _spherical_scale(kernel: str, lengthscale: float, nu: float) -> float:
    """c with Σ_ℓ (2ℓ+1)/(4π) c λ̃_ℓ = 1 over all degrees (unit pointwise variance of the
    untruncated operator): the first :data:`_NORMALISING_DEGREES` summed, the Matérn tail
    ∫ (2x+1)(a + x(x+1))^{−(ν+1)} dx ≈ (a + L(L+1))^{−ν}/ν added in closed form."""
    degrees = np.arange(_NORMALISING_DEGREES, dtype=np.float64)
    lam = _degree_spectrum(degrees, kernel, lengthscale, nu)
    total = float(np.sum((2 * degrees + 1) * lam))
    if kernel == "matern":
        a = 2 * nu / np.deg2rad(lengthscale) ** 2
        top = float(_NORMALISING_DEGREES)
        total += (a + top * (top + 1)) ** (-nu) / nu
    return 4 * math.pi / total


@dataclass(frozen=True)
class SphericalCovariance(CovarianceOperator):
    """Isotropic Q on the sphere, diagonal in spherical harmonics: Q Y_ℓm = λ_ℓ Y_ℓm.

    The Matérn form is the planar one with |κ|² → ℓ(ℓ+1), the eigenvalue of −Δ on the
    unit sphere (Whittle's SPDE on the sphere; Lindgren, Rue and Lindström 2011):

        λ_ℓ = c (2ν/ℓ_c² + ℓ(ℓ+1))^{−(ν+1)},    squared exponential: c exp(−ℓ_c² ℓ(ℓ+1)/2),

    ℓ_c = ``lengthscale`` in degrees of arc, converted to radians. Σ_ℓ (2ℓ+1) λ_ℓ < ∞
    (ν > 0): Q is trace-class, and c normalises the pointwise variance of the
    untruncated operator, k(x, x) = Σ_ℓ (2ℓ+1)/(4π) λ_ℓ = 1 (addition theorem), so a grid
    holds 1 − (the tail beyond its :attr:`~hdm.hilbert.grids.GlobalGrid.max_degree`).

    A draw ξ = Σ_ℓm √λ_ℓ z_ℓm Y_ℓm (real field: z_ℓ0 ~ N(0, 1), z_ℓm = (a + ib)/√2 for
    m > 0 with Y_ℓ,−m's coefficient its conjugate) is made with torch-harmonics'
    inverse real transform (orthonormal harmonics). The standard normals are assigned
    to (ℓ, m) in the order of ℓ, then m, in the fixed blocks of the planar form, so two
    resolutions with one seed share the coefficients of their common degrees: the
    coarse draw is the spectral truncation of the fine one. On grid values,
    (Q g)_i = Σ_j k(x_i, x_j) g_j = Σ_ℓm λ_ℓ Y_ℓm(x_i) Σ_j Y*_ℓm(x_j) g_j, computed as
    ISHT(λ · SHT(g / w)) with w the quadrature weights in steradians (the forward
    transform is the quadrature Σ_j w_j f_j Y*_ℓm(x_j)): exact for the truncated kernel
    up to torch-harmonics 0.8's tables of the Legendre functions, which are single
    precision (relative errors of 10⁻⁵–10⁻⁴; the transforms then run in float64).

    ``band_limit`` L_Q (optional) sets λ_ℓ = 0 for ℓ ≥ L_Q (c unchanged: the operator
    loses its tail, Σ_{ℓ≥L_Q} (2ℓ+1)/(4π) λ_ℓ of its variance). Q stays trace-class and
    its range is the band ℓ < L_Q. Set it to the SFNO's ``n_degrees``: noise beyond the
    degrees the network's spectral layers keep reaches it only through its pointwise
    paths, which did not learn to remove it, so it stayed in every sample (the
    shallow-water prior without it: 10⁴ m² of h at ℓ ≥ 11 against 0.2 in the test
    states, 74–80 % of the downscaled spread there; keeping every degree in the network
    instead made it worse, BENCHMARKS.md sphere-prior). A Q of this rank needs
    :meth:`project_covector` in guidance: A Q Aᵀ is singular beyond the band, and a
    station's Aᵀv passed whole through the network's Jacobian (Q Jᵀ Aᵀ v) carried the
    residuals the observation noise alone weighs into the band, and MMPS diverged; and
    :meth:`project_field` in the denoiser (:class:`~hdm.hilbert.denoisers.
    PreconditionedDenoiser`), which fixes the part of its output Q never perturbs.

    ``vector`` (optional): two channel indices (eastward, northward) that are the
    components of one tangent vector field, the wind. Components are not scalars on the
    sphere (u at a pole depends on the direction one comes from), so their noise is not a
    pair of scalar draws: it is the velocity V = ∇χ + r̂ × ∇ψ (unit sphere) of independent
    isotropic stream function ψ and velocity potential χ whose coefficients on the
    orthonormal vector harmonics ∇Y_ℓm/√(ℓ(ℓ+1)), r̂ × ∇Y_ℓm/√(ℓ(ℓ+1)) have variance μ_ℓ
    (:meth:`vector_degree_eigenvalues`: λ_ℓ renormalised without ℓ = 0). By the vector
    addition theorem E|V|² = 2 Σ_{ℓ≥1} (2ℓ+1)/(4π) μ_ℓ, the same at every point, half of it
    per component: each wind component has the scalar channels' unit pointwise variance,
    and Q's range is exactly the winds of band-limited ψ and χ (those of the shallow-water
    solver's truncated vorticity and divergence: its states keep all but 3·10⁻⁸ under
    :meth:`project_field`). The pair needs the winds normalised alike and not shifted
    (:meth:`hdm.data.normalization.FieldNormaliser.with_vector`), so that the normalised
    winds remain a vector field.
    """

    kernel: str = "matern"
    lengthscale: float = 10.0
    nu: float = 1.5
    band_limit: int | None = None
    vector: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_kernel(self.kernel, self.lengthscale, self.nu)
        if self.band_limit is not None and (
            isinstance(self.band_limit, bool)
            or not isinstance(self.band_limit, (int, np.integer))
            or self.band_limit < 1
        ):
            raise ValueError(
                f"the band limit of a spherical Q is a whole number of degrees ≥ 1 "
                f"(λ_ℓ = 0 for ℓ ≥ it), got {self.band_limit!r}"
            )
        if self.vector is not None:
            pair = tuple(self.vector)
            if (
                len(pair) != 2
                or not all(isinstance(c, (int, np.integer)) and c >= 0 for c in pair)
                or pair[0] == pair[1]
            ):
                raise ValueError(
                    f"the vector pair of a spherical Q is two different channel indices "
                    f"(eastward, northward), got {self.vector!r}"
                )
            object.__setattr__(self, "vector", (int(pair[0]), int(pair[1])))

    @property
    def restricts_range(self) -> bool:  # type: ignore[override]
        return self.band_limit is not None or self.vector is not None

    def degree_eigenvalues(self, max_degree: int) -> np.ndarray:
        """λ_ℓ for ℓ = 0 … max_degree − 1, float64; 0 from ``band_limit`` on."""
        degrees = np.arange(int(max_degree), dtype=np.float64)
        scale = _spherical_scale(self.kernel, float(self.lengthscale), float(self.nu))
        lam = scale * _degree_spectrum(degrees, self.kernel, self.lengthscale, self.nu)
        if self.band_limit is not None:
            lam[degrees >= self.band_limit] = 0.0
        return lam

    def vector_degree_eigenvalues(self, max_degree: int) -> np.ndarray:
        """μ_ℓ, the variance of each orthonormal vector harmonic's coefficient of the vector
        pair (module doc of the class): λ_ℓ / (1 − λ_0/(4π)) for ℓ ≥ 1, 0 at ℓ = 0 (a
        tangent field has no degree 0), so each component has the scalar channels'
        pointwise variance, Σ_{ℓ≥1} (2ℓ+1)/(4π) μ_ℓ = 1 untruncated."""
        lam = self.degree_eigenvalues(max_degree)
        lam0 = float(self.degree_eigenvalues(1)[0])  # a band limit is ≥ 1: λ_0 kept
        mu = lam / (1.0 - lam0 / (4 * math.pi))
        mu[:1] = 0.0
        return mu

    def share_beyond(self, degree: int, grid: Grid) -> float:
        """The share of Q's variance on ``grid`` at degrees ℓ ≥ ``degree``:
        Σ_{degree ≤ ℓ < L} (2ℓ+1) λ_ℓ / Σ_{ℓ < L} (2ℓ+1) λ_ℓ."""
        lam = self.degree_eigenvalues(_global(grid).max_degree)
        weight = (2 * np.arange(len(lam)) + 1) * lam
        return float(weight[int(degree) :].sum() / weight.sum())

    def truncated_variance(self, grid: Grid) -> float:
        """k(x, x) held on ``grid``: Σ_{ℓ<L} (2ℓ+1)/(4π) λ_ℓ (≤ 1)."""
        lam = self.degree_eigenvalues(_global(grid).max_degree)
        return float(np.sum((2 * np.arange(len(lam)) + 1) * lam) / (4 * math.pi))

    def _unit_spectra(self, n: int, big_l: int, generator, where) -> torch.Tensor:
        """Standard complex coefficients (n, L, L) of n fields: z_ℓ0 ~ N(0, 1) real,
        z_ℓm = (a + ib)/√2 for m > 0, the normals assigned to (ℓ, m) in the fixed blocks of
        :func:`_draw_blocks` (two resolutions share their common degrees' draws)."""
        degrees, orders = _spherical_modes(big_l)
        draws = torch.cat(
            [
                torch.randn(size, n, 2, generator=generator, dtype=torch.float64, device=where)
                for size in _draw_blocks(len(degrees))
            ]
        )[: len(degrees)]
        real = orders == 0
        coeff = torch.complex(
            draws[..., 0],
            torch.where(torch.from_numpy(real).to(where)[:, None], 0.0, draws[..., 1]),
        )
        coeff = coeff * torch.from_numpy(np.where(real, 1.0, 1 / math.sqrt(2))).to(where)[:, None]
        spectrum = torch.zeros(n, big_l, big_l, dtype=torch.complex128, device=where)
        spectrum[:, torch.from_numpy(degrees).to(where), torch.from_numpy(orders).to(where)] = (
            coeff.T
        )
        return spectrum

    def sample(self, n, grid, generator=None, dtype=torch.float32, device=None):
        if self.vector is not None:
            raise ValueError(
                "a spherical Q with a vector pair draws its channels together: use "
                "sample_channels(n, channels, grid)"
            )
        grid = _global(grid)
        where = draw_device(generator)
        big_l = grid.max_degree
        spectrum = self._unit_spectra(n, big_l, generator, where)
        spectrum = spectrum * _per_degree(np.sqrt(self.degree_eigenvalues(big_l)), where)
        field = spherical_transforms(grid, where)[1](spectrum)
        return field.flip(-2).to(dtype=dtype, device=device).contiguous()

    def sample_channels(self, n, channels, grid, generator=None, dtype=torch.float32, device=None):
        """As the base class for scalar channels (the same draws); the vector pair's two
        channels are the eastward and northward components of ∇ψ + r̂ × ∇χ-like fields
        whose spheroidal and toroidal coefficients are the pair's standard draws times
        √(μ_ℓ / (ℓ(ℓ+1))) (torch-harmonics' vector synthesis is the unnormalised gradient
        of the scalar harmonics, of squared norm ℓ(ℓ+1))."""
        if self.vector is None:
            return super().sample_channels(n, channels, grid, generator, dtype, device)
        grid = _global(grid)
        self._check_pair(channels)
        where = draw_device(generator)
        big_l = grid.max_degree
        spectra = self._unit_spectra(n * channels, big_l, generator, where)
        spectra = spectra.reshape(n, channels, big_l, big_l)
        scalar = [c for c in range(channels) if c not in self.vector]
        out = torch.empty(n, channels, *grid.shape, dtype=torch.float64, device=where)
        if scalar:
            lam = _per_degree(np.sqrt(self.degree_eigenvalues(big_l)), where)
            out[:, scalar] = spherical_transforms(grid, where)[1](spectra[:, scalar] * lam)
        out[:, list(self.vector)] = spherical_vector_transforms(grid, where)[1](
            spectra[:, list(self.vector)] * _per_degree(self._vector_synthesis(big_l), where)
        )
        return out.flip(-2).to(dtype=dtype, device=device).contiguous()

    def _vector_synthesis(self, big_l: int) -> np.ndarray:
        """√(μ_ℓ / (ℓ(ℓ+1))) per degree (0 at ℓ = 0)."""
        ell = np.arange(big_l, dtype=np.float64)
        mu = self.vector_degree_eigenvalues(big_l)
        return np.sqrt(np.divide(mu, ell * (ell + 1), out=np.zeros_like(mu), where=ell > 0))

    def _check_pair(self, channels: int) -> None:
        if self.vector is not None and max(self.vector) >= channels:
            raise ValueError(
                f"the vector pair of Q is channels {self.vector}, but the fields have "
                f"{channels} channel(s)"
            )

    def _spectral(self, f: torch.Tensor, grid, scalar_weights, vector_weights) -> torch.Tensor:
        """ISHT(w_ℓ SHT(f)) on the scalar channels and the vector synthesis of
        (w_ℓ × the vector analysis) on the pair, f (..., C, nlat, nlon) south-first, float64
        on f's device; ``scalar_weights`` None leaves the scalar channels as they are."""
        forward, inverse = spherical_transforms(grid, f.device)
        north_first = f.to(torch.float64).flip(-2)
        if self.vector is None:
            if scalar_weights is None:
                return f.to(torch.float64)
            return inverse(forward(north_first) * _per_degree(scalar_weights, f.device)).flip(-2)
        if f.ndim < 3:
            raise ValueError(
                "a spherical Q with a vector pair acts on fields with a channel axis "
                f"(..., C, nlat, nlon), got shape {tuple(f.shape)}"
            )
        self._check_pair(f.shape[-3])
        out = north_first.clone()
        scalar = [c for c in range(f.shape[-3]) if c not in self.vector]
        if scalar and scalar_weights is not None:
            coeff = forward(north_first[..., scalar, :, :]) * _per_degree(scalar_weights, f.device)
            out[..., scalar, :, :] = inverse(coeff)
        v_forward, v_inverse = spherical_vector_transforms(grid, f.device)
        pair = list(self.vector)
        coeff = v_forward(north_first[..., pair, :, :]) * _per_degree(vector_weights, f.device)
        out[..., pair, :, :] = v_inverse(coeff)
        return out.flip(-2)

    def apply(self, g: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Q g = ISHT(λ_ℓ SHT(g / w)) per scalar channel and, on the vector pair,
        VISHT(μ_ℓ VSHT(g / w)): the vector analysis is the quadrature of the synthesis'
        basis divided by its squared norm ℓ(ℓ+1), so (synthesis)ᵀ g = ℓ(ℓ+1) VSHT(g / w) and
        Q = synthesis · diag(μ_ℓ/(ℓ(ℓ+1))) · synthesisᵀ takes this form."""
        grid = _global(grid)
        steradians = torch.as_tensor(grid.weights() * (math.pi / 180) ** 2, device=g.device)
        big_l = grid.max_degree
        out = self._spectral(
            g.to(torch.float64) / steradians,
            grid,
            self.degree_eigenvalues(big_l),
            self.vector_degree_eigenvalues(big_l) if self.vector is not None else None,
        )
        return out.to(g.dtype)

    def dense(self, grid: Grid) -> np.ndarray:
        if self.vector is not None:
            raise ValueError(
                "a spherical Q with a vector pair couples two channels: it has no matrix on "
                "one field's grid values (apply it to fields (..., C, nlat, nlon))"
            )
        return super().dense(grid)

    def _band(self, big_l: int) -> np.ndarray:
        band = np.ones(big_l)
        if self.band_limit is not None:
            band[self.band_limit :] = 0.0
        return band

    def project_field(self, f: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Π f = ISHT(1_{ℓ<L_Q} SHT(f)) per scalar channel (the identity without a band
        limit) and VISHT(1_{1≤ℓ<L_Q} VSHT(f)) on the vector pair: the winds that are the
        velocity of band-limited stream function and velocity potential, the only ones a
        Q-noise draw holds. Π Q = Q."""
        if not self.restricts_range:
            return f
        grid = _global(grid)
        band = self._band(grid.max_degree)
        scalar = band if self.band_limit is not None else None
        return self._spectral(f, grid, scalar, band).to(f.dtype)

    def project_covector(self, g: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Π g = w ⊙ Π_field(g / w) (w: quadrature weights in steradians), the
        transforms of :meth:`apply` with λ_ℓ, μ_ℓ replaced by 1 in the band: Q Π = Q."""
        if not self.restricts_range:
            return g
        grid = _global(grid)
        steradians = torch.as_tensor(grid.weights() * (math.pi / 180) ** 2, device=g.device)
        return (self.project_field(g.to(torch.float64) / steradians, grid) * steradians).to(g.dtype)

    def describe(self) -> str:
        band = "" if self.band_limit is None else f", degrees ℓ < {self.band_limit}"
        if self.vector is not None:
            band += f", channels {self.vector[0]}, {self.vector[1]} a wind vector"
        if self.kernel == "se":
            return f"spherical SE(ℓ={self.lengthscale:g}°{band})"
        return f"spherical Matérn(ν={self.nu:g}, ℓ={self.lengthscale:g}°{band})"

    def to_dict(self) -> dict:
        d = {
            "kind": "spherical",
            "kernel": self.kernel,
            "lengthscale": self.lengthscale,
            "nu": self.nu,
        }
        if self.band_limit is not None:
            d["band_limit"] = int(self.band_limit)
        if self.vector is not None:
            d["vector"] = list(self.vector)
        return d


def _per_degree(values: np.ndarray | None, device) -> torch.Tensor | float:
    """A per-degree factor (L,) broadcast over orders: shape (L, 1), float64 (1.0 for None)."""
    if values is None:
        return 1.0
    return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)[:, None]


def _global(grid: Grid):
    """``grid`` as a GlobalGrid, or a ValueError naming what it is."""
    from hdm.hilbert.grids import GlobalGrid

    if not isinstance(grid, GlobalGrid):
        raise ValueError(
            f"a spherical covariance lives on a global grid (GlobalGrid), not on "
            f"{grid.describe()}; a regional box takes a SpectralCovariance"
        )
    return grid


@lru_cache(maxsize=16)
def _spherical_modes(max_degree: int) -> tuple[np.ndarray, np.ndarray]:
    """(ℓ, m) of the modes ℓ < L, 0 ≤ m ≤ ℓ, in the canonical order (ℓ, then m)."""
    degrees = np.concatenate([np.full(ell + 1, ell) for ell in range(max_degree)])
    orders = np.concatenate([np.arange(ell + 1) for ell in range(max_degree)])
    return degrees, orders


@lru_cache(maxsize=16)
def spherical_transforms(grid, device):
    """torch-harmonics' forward and inverse real transforms of ``grid`` (orthonormal
    harmonics, triangular truncation at its max degree), float64, on ``device``; rows
    north to south (the callers flip the grid's south-to-north rows)."""
    import torch_harmonics as th

    nlat, nlon = grid.shape
    kind = "equiangular" if grid.quadrature == "equiangular" else "legendre-gauss"
    size = grid.max_degree
    forward = th.RealSHT(nlat, nlon, lmax=size, mmax=size, grid=kind, norm="ortho")
    inverse = th.InverseRealSHT(nlat, nlon, lmax=size, mmax=size, grid=kind, norm="ortho")
    return forward.double().to(device), inverse.double().to(device)


@lru_cache(maxsize=16)
def spherical_vector_transforms(grid, device):
    """torch-harmonics' forward and inverse real vector transforms of ``grid`` (the pair
    of components (eastward, northward) rows north to south, as the shallow-water solver
    uses them; synthesis of coefficients (c¹, c²) gives ∇-type and r̂×∇-type fields of
    Σ c Y_ℓm, unnormalised), float64, on ``device``."""
    import torch_harmonics as th

    nlat, nlon = grid.shape
    kind = "equiangular" if grid.quadrature == "equiangular" else "legendre-gauss"
    size = grid.max_degree
    forward = th.RealVectorSHT(nlat, nlon, lmax=size, mmax=size, grid=kind, norm="ortho")
    inverse = th.InverseRealVectorSHT(nlat, nlon, lmax=size, mmax=size, grid=kind, norm="ortho")
    return forward.double().to(device), inverse.double().to(device)


def covariance_from_dict(d: dict) -> CovarianceOperator:
    """Rebuild a covariance operator from :meth:`CovarianceOperator.to_dict`."""
    kind = d.get("kind")
    args = {k: v for k, v in d.items() if k != "kind"}
    if kind == "spectral":
        return SpectralCovariance(**args)
    if kind == "white":
        return WhiteNoise()
    if kind == "kernel":
        return KernelCovariance(**args)
    if kind == "spherical":
        return SphericalCovariance(**args)
    raise ValueError(
        f"unknown covariance kind {kind!r}; known: 'spectral', 'spherical', 'white', 'kernel'"
    )
