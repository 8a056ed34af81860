"""TruncatedSpectralConv: neuraloperator's spectral convolution, computing only the kept modes.

neuraloperator's ``SpectralConv`` (real data, ``fft_norm="forward"``) computes

    K h = irfftn( P_out ⊙ W · P_in rfftn(h) ) + b

with the full FFT of every (batch, channel) slice, keeps the lowest modes (``n_modes``
per axis: frequencies −⌊m/2⌋ … ⌈m/2⌉ − 1 on the first axis after its FFT shift, 0 … m_W − 1
on the last, half-spectrum axis), multiplies them by the weights and inverts an FFT of
the zero-padded spectrum. With m ≪ n most of both FFTs is thrown away, and in autograd
the backward of the real FFT is a complex FFT of the zero-padded full spectrum (twice the
points and complex arithmetic): 45 % of a guided NFE at 128 × 128 (torch profiler).

This layer keeps neuraloperator's weights, contraction and bias (the same ``state_dict``,
so checkpoints load into either) and evaluates the same sums as matrix products with
the truncated DFT matrices of each axis, on an (H, W) grid with kept modes (m_H, m_W):

    last axis (real → half spectrum):   X[…, k] = (1/W) Σ_w h[…, w] e^{−2πi k w / W},  k < m_W
    first axis (complex):               Y[f, k] = (1/H) Σ_y X[y, k] e^{−2πi f y / H}
    inverse, first axis:                Z[y, k] = Σ_f (W·Y)[f, k] e^{+2πi f y / H}
    inverse, last axis (c2r):           out[…, w] = Σ_k c_k Re(Z[…, k] e^{+2πi k w / W})

with c_0 = 1, c_{W/2} = 1 (even W), c_k = 2 otherwise: ``irfft``'s Hermitian doubling;
the sine rows of k = 0 and k = W/2 vanish, so the imaginary parts that ``irfft``
ignores are ignored here too. A forward costs O(N (m_W + m_H m_W / W)) per channel
instead of O(N log N), in dense BLAS products whose backward is again a product (no
zero-padded complex FFT). The DFT matrices are built once per (size, modes, dtype,
device) and cached.

Cases the products do not cover run neuraloperator's own forward: complex data, other
precisions, resolution scaling or an explicit output shape, more than two axes, grids
with fewer points than modes on an axis (neuraloperator then slices its weights), and
an odd first axis (neuraloperator undoes its FFT shift with a second ``fftshift``,
which is its inverse only for even sizes; the trained weights are kept exact to that).
"""

from __future__ import annotations

import math

import torch
from neuralop.layers.spectral_convolution import SpectralConv


def _half_spectrum_matrices(n: int, kept: int, dtype: torch.dtype, device) -> tuple:
    """(forward (n, 2·kept), inverse (2·kept, n)) real matrices of the last axis.

    forward: h @ F = [Re X, Im X] with X_k = (1/n) Σ_w h_w e^{−2πi k w/n};
    inverse: [Re Z, Im Z] @ G = Σ_k c_k Re(Z_k e^{2πi k w/n}) (irfft, norm "forward")."""
    w = torch.arange(n, dtype=torch.float64)
    k = torch.arange(kept, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(w, k) / n  # (n, kept)
    forward = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) / n
    weight = torch.full((kept,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n % 2 == 0 and kept == n // 2 + 1:
        weight[-1] = 1.0
    inverse = torch.cat(
        [weight[:, None] * torch.cos(angle.T), -weight[:, None] * torch.sin(angle.T)]
    )
    return forward.to(dtype=dtype, device=device), inverse.to(dtype=dtype, device=device)


def _centred_matrices(n: int, kept: int, dtype: torch.dtype, device) -> tuple:
    """(forward (kept, n), inverse (n, kept)) complex matrices of the first axis for the
    frequencies −⌊kept/2⌋ … ⌈kept/2⌉ − 1 (neuraloperator's order after ``fftshift``):
    forward (1/n) e^{−2πi f y/n}, inverse e^{+2πi f y/n}."""
    f = torch.arange(-(kept // 2), kept - kept // 2, dtype=torch.float64)
    y = torch.arange(n, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(f, y) / n  # (kept, n)
    forward = torch.polar(torch.full_like(angle, 1.0 / n), -angle)
    inverse = torch.polar(torch.ones_like(angle), angle).T
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    return (
        forward.to(dtype=complex_dtype, device=device).contiguous(),
        inverse.to(dtype=complex_dtype, device=device).contiguous(),
    )


class TruncatedSpectralConv(SpectralConv):
    """``SpectralConv`` (real data) whose kept modes come from truncated DFT products.

    Same parameters, ``state_dict`` and output as neuraloperator's layer (to float
    rounding); see the module docstring for the sums and the cases that fall back.
    ``use_products`` (class or instance attribute): False runs neuraloperator's FFT
    forward everywhere (``python -m benchmarks spectral_layer`` times the two)."""

    use_products: bool = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._dft_cache: dict[tuple, tuple] = {}

    def _dft(self, kind: str, n: int, kept: int, x: torch.Tensor) -> tuple:
        key = (kind, n, kept, x.dtype, x.device)
        if key not in self._dft_cache:
            build = _half_spectrum_matrices if kind == "half" else _centred_matrices
            self._dft_cache[key] = build(n, kept, x.dtype, x.device)
        return self._dft_cache[key]

    def _products_apply(self, x: torch.Tensor) -> bool:
        if (
            not self.use_products
            or self.complex_data
            or self.fno_block_precision != "full"
            or self.resolution_scaling_factor is not None
            or self.order not in (1, 2)
            or self.fft_norm != "forward"
            or x.dtype not in (torch.float32, torch.float64)
        ):
            return False
        sizes = list(x.shape[2:])
        spectrum = [*sizes[:-1], sizes[-1] // 2 + 1]
        if any(s < m for s, m in zip(spectrum, self.max_n_modes)):
            return False
        return self.order == 1 or sizes[0] % 2 == 0

    def forward(self, x: torch.Tensor, output_shape=None) -> torch.Tensor:
        if output_shape is not None or not self._products_apply(x):
            return super().forward(x, output_shape=output_shape)
        # the products stay in the input's precision under autocast, as the FFTs would
        with torch.autocast(x.device.type, enabled=False):
            return self._truncated_forward(x)

    def _truncated_forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, width = x.shape
        kept_last = self.max_n_modes[-1]
        forward_last, inverse_last = self._dft("half", width, kept_last, x)
        spectrum = x @ forward_last  # (B, C, [H,] 2 m_W)
        spectrum = torch.complex(spectrum[..., :kept_last], spectrum[..., kept_last:])
        if self.order == 2:
            forward_first, inverse_first = self._dft("centred", lead[-1], self.max_n_modes[0], x)
            spectrum = forward_first @ spectrum  # (B, C, m_H, m_W)
        out = self._contract(spectrum, self.weight, separable=self.separable)
        if self.order == 2:
            out = inverse_first @ out  # (B, C_out, H, m_W)
        out = torch.cat([out.real, out.imag], dim=-1) @ inverse_last
        if self.bias is not None:
            out = out + self.bias
        return out
