"""TimeConditionedFNO: a Fourier neural operator backbone for diffusion in function space.

Architecture (Li et al. 2021, FNO; with per-sample time conditioning):

    h_0 = P([x, s(grid), z, c(grid)])                  lifting, pointwise
    h_{l+1} = h_l + GELU( (1 + a_l(τ)) ⊙ (K_l h_l + W_l h_l) + b_l(τ) )
    F = Π(h_L)                                         projection, pointwise MLP

- x: (batch, C, *grid.shape); s(grid): K static input fields (land fraction,
  orography, ...; :class:`hdm.hilbert.statics.StaticInputs`), the same for every sample
  and known on every grid, none when ``static_channels`` is 0; c(grid) are coordinate
  channels in [0, 1] across the *domain* (so a point has the same coordinate on every
  resolution).
- K_l: neuraloperator's ``SpectralConv`` (Fourier multipliers on the lowest n_modes
  modes, ``fft_norm="forward"`` so amplitudes do not depend on the number of points),
  evaluated by :class:`hdm.hilbert.spectral.TruncatedSpectralConv`: the same weights
  and output, with the kept modes from truncated DFT products instead of full FFTs
  (one NFE of 16 members at 128 × 128: 2.2× faster plain, 2.5× guided; section
  spectral-layer of BENCHMARKS.md);
  W_l: a pointwise linear map.
- τ = c_noise (batch,): sinusoidal embedding → MLP → per-layer FiLM (a_l, b_l) per
  sample and channel. A model with ``condition_inputs`` R > 0 takes per-sample scalars
  z (batch, R) beside τ (the small-scale level of :mod:`hdm.hilbert.regime`): the MLP
  sees embedding(τ) + A z, A zero-initialised, so τ and z act jointly on every FiLM, and
  the lifting P sees z as R constant input fields.
  neuraloperator's own ``FNO.forward`` takes no time input and its ``AdaIN`` holds one
  embedding for the whole batch, hence this module.
- Non-periodic axes are extended by their mirror image (even extension, period 2L)
  after the lifting, and cropped before the projection, so the FFT of the spectral
  layers sees a continuous periodic function. Zero padding would leave a jump at the
  boundary whose aliasing differs between resolutions (measured on an untrained network
  at 100 vs 397 points: 1.8 % output difference at shared points with 25 % zero padding,
  0.08 % with the even extension). The period is exactly 2L on every grid, so the
  Fourier modes are the same physical wavenumbers at every resolution.
- On the CPU a batch runs in chunks whose hidden activation, (chunk, width, *extended
  grid), stays within ``cpu_chunk_bytes`` (4 MiB by default): the layers are pointwise
  or per-sample transforms, so chunks give the same output, and small blocks that stay
  in the cache and below glibc's mmap threshold are faster (16 members of width 16 on
  128 × 128, one NFE with FFT layers: 2.42 s as one batch, 0.95 s one member at a
  time; 4 MiB was the fastest of 1, 4 and 16 MiB on every grid of
  ``python -m benchmarks fno_chunking`` on a 2-core x86_64 with a 32 MiB L3). On other
  devices the batch runs whole. Guidance splits a batch by the same rule with a larger
  budget (``Guidance.cpu_graph_chunk_bytes``), so that one chunk's autograd graph lives
  at a time.

The network accepts any resolution of the grid it was trained on; a grid of another
dimension, channel count, or too few points raises :class:`GridError`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from neuralop.layers.channel_mlp import ChannelMLP
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from hdm.hilbert.grids import Grid
from hdm.hilbert.spectral import TruncatedSpectralConv


class GridError(ValueError):
    """A field or grid that the network cannot take."""


def sinusoidal_embedding(tau: torch.Tensor, dim: int, max_period: float = 1e4) -> torch.Tensor:
    """[cos(τ ω_j), sin(τ ω_j)], ω_j = max_period^{−j/(dim/2)} · 1000 (τ is O(1)), (batch, dim)."""
    half = dim // 2
    freqs = 1000.0 * torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=tau.device) / half
    )
    args = tau.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def time_modulation(time_dim: int, width: int, n_layers: int) -> tuple[nn.Module, nn.ModuleList]:
    """The time conditioning of a score network: an MLP on the sinusoidal embedding of τ
    and one linear map per block to its FiLM (a_l, b_l) of ``width`` channels each,
    zero-initialised so that an untrained network starts with the identity modulation."""
    mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
    film = nn.ModuleList([nn.Linear(time_dim, 2 * width) for _ in range(n_layers)])
    for layer in film:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return mlp, film


class TimeConditionedFNO(nn.Module):
    """F(x, τ, grid) (see module docstring).

    Parameters
    ----------
    dim: number of spatial axes (1 or 2).
    channels: data channels C (input and output).
    static_channels: static input fields K (inputs only; 0: none).
    width: hidden channels. n_modes: Fourier modes kept per axis (int or tuple).
    n_layers: spectral blocks.
    time_dim: width of the time embedding.
    condition_inputs: per-sample scalar conditions R beside τ (0: none).

    ``cpu_chunk_bytes`` (attribute, not saved with the weights): the largest hidden
    activation of one chunk on the CPU, in bytes; 0 runs every batch whole.
    """

    cpu_chunk_bytes: int = 4 * 2**20

    def __init__(
        self,
        dim: int = 1,
        channels: int = 1,
        width: int = 64,
        n_modes: int | tuple[int, ...] = 32,
        n_layers: int = 4,
        time_dim: int = 128,
        static_channels: int = 0,
        condition_inputs: int = 0,
    ):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"TimeConditionedFNO supports 1 or 2 spatial axes, got {dim}")
        modes = (n_modes,) * dim if isinstance(n_modes, int) else tuple(n_modes)
        if len(modes) != dim:
            raise ValueError(f"n_modes {modes} must have one entry per axis ({dim})")
        self.config = {
            "dim": dim,
            "channels": channels,
            "width": width,
            "n_modes": list(modes),
            "n_layers": n_layers,
            "time_dim": time_dim,
            "static_channels": static_channels,
        }
        if condition_inputs:  # absent from the configs of models without (and their files)
            self.config["condition_inputs"] = condition_inputs
        self.dim = dim
        self.channels = channels
        self.static_channels = static_channels
        inputs = channels + static_channels + condition_inputs + dim
        self.lift = ChannelMLP(inputs, width, hidden_channels=width, n_layers=2, n_dim=dim)
        self.spectral = nn.ModuleList(
            [TruncatedSpectralConv(width, width, n_modes=modes) for _ in range(n_layers)]
        )
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        self.pointwise = nn.ModuleList([conv(width, width, 1) for _ in range(n_layers)])
        self.time_mlp, self.film = time_modulation(time_dim, width, n_layers)
        self.condition_inputs = condition_inputs
        if condition_inputs:
            self.condition = nn.Linear(condition_inputs, time_dim)
            nn.init.zeros_(self.condition.weight)
            nn.init.zeros_(self.condition.bias)
        self.project = ChannelMLP(width, channels, hidden_channels=2 * width, n_layers=2, n_dim=dim)
        self.time_dim = time_dim

    @staticmethod
    def even_extension(h: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Extend every non-periodic axis of n points by its mirror image without the end
        points (n − 2 more): a continuous function of period 2L on every resolution."""
        for k, axis in enumerate(grid.axes):
            if not axis.periodic:
                dim = h.ndim - grid.ndim + k
                inner = h.narrow(dim, 1, axis.n - 2).flip(dim)
                h = torch.cat([h, inner], dim=dim)
        return h

    def check_input(self, x: torch.Tensor, grid: Grid) -> None:
        if grid.ndim != self.dim:
            raise GridError(
                f"this model takes {self.dim}-D grids, got a {grid.ndim}-D grid ({grid.describe()})"
            )
        if x.ndim != 2 + self.dim or x.shape[1] != self.channels:
            raise GridError(
                f"expected fields of shape (batch, {self.channels}, *{grid.shape}), "
                f"got {tuple(x.shape)}"
            )
        if tuple(x.shape[2:]) != grid.shape:
            raise GridError(f"field shape {tuple(x.shape[2:])} does not match grid {grid.shape}")
        if min(grid.shape) < 4:
            raise GridError(f"the grid needs at least 4 points per axis, got {grid.shape}")

    def chunk_size(self, x: torch.Tensor, grid: Grid, budget: int | None = None) -> int:
        """Samples per chunk: the batch split into the fewest equal chunks whose hidden
        activation (chunk × width × extended points × element size) fits in ``budget``
        bytes (default ``cpu_chunk_bytes``); the whole batch off the CPU or when the
        budget is 0."""
        batch = x.shape[0]
        budget = self.cpu_chunk_bytes if budget is None else budget
        if x.device.type != "cpu" or budget <= 0 or batch <= 1:
            return max(batch, 1)
        points = math.prod(a.n if a.periodic else 2 * a.n - 2 for a in grid.axes)
        per_sample = points * self.config["width"] * x.element_size()
        largest = max(1, budget // per_sample)
        chunks = -(-batch // largest)
        return -(-batch // chunks)

    def check_statics(self, statics: torch.Tensor | None, grid: Grid) -> None:
        if self.static_channels == 0:
            if statics is not None:
                raise GridError("this model takes no static inputs, but some were given")
            return
        if statics is None:
            raise GridError(
                f"this model needs {self.static_channels} static input field(s) (land "
                "fraction, orography, ...) on the grid: load it with hdm.load_prior, which "
                "rebuilds them from the sources recorded in the checkpoint"
            )
        if tuple(statics.shape) != (self.static_channels, *grid.shape):
            raise GridError(
                f"static inputs of shape {tuple(statics.shape)}, expected "
                f"{(self.static_channels, *grid.shape)}"
            )

    def check_condition(self, condition: torch.Tensor | None, batch: int) -> None:
        if self.condition_inputs == 0:
            if condition is not None:
                raise GridError("this model takes no per-sample conditions, but some were given")
            return
        if condition is None or tuple(condition.shape) != (batch, self.condition_inputs):
            raise GridError(
                f"this model needs {self.condition_inputs} condition value(s) per field, "
                f"shape ({batch}, {self.condition_inputs}), got "
                f"{None if condition is None else tuple(condition.shape)}"
            )

    def forward(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        grid: Grid,
        statics: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """F(x, τ) on ``grid``: x (batch, C, *grid.shape), τ (batch,), ``statics``
        (K, *grid.shape) when the model has static channels, ``condition`` (batch, R) when
        it has condition inputs."""
        self.check_input(x, grid)
        self.check_statics(statics, grid)
        self.check_condition(condition, x.shape[0])
        if tau.shape != (x.shape[0],):
            raise GridError(
                f"expected one noise level per field, shape ({x.shape[0]},), got {tuple(tau.shape)}"
            )
        size = self.chunk_size(x, grid)
        if size >= x.shape[0]:
            return self._forward(x, tau, grid, statics, condition)
        conditions = [None] * len(x.split(size)) if condition is None else condition.split(size)
        return torch.cat(
            [
                self._forward(xc, tc, grid, statics, cc)
                for xc, tc, cc in zip(x.split(size), tau.split(size), conditions)
            ]
        )

    def _forward(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        grid: Grid,
        statics: torch.Tensor | None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        coords = grid.normalised_coords(dtype=x.dtype, device=x.device)
        inputs = [x]
        if statics is not None:
            inputs.append(
                statics.to(dtype=x.dtype, device=x.device).expand(x.shape[0], -1, *grid.shape)
            )
        if condition is not None:  # constant input fields too: z reaches every point directly
            inputs.append(
                condition.to(x.dtype)
                .reshape(*condition.shape, *[1] * self.dim)
                .expand(-1, -1, *grid.shape)
            )
        inputs.append(coords.unsqueeze(0).expand(x.shape[0], *coords.shape))
        h = self.lift(torch.cat(inputs, dim=1))
        h = self.even_extension(h, grid)
        emb = sinusoidal_embedding(tau, self.time_dim).to(x.dtype)
        if condition is not None:
            emb = emb + self.condition(condition.to(x.dtype))
        emb = self.time_mlp(emb)
        view = (x.shape[0], -1) + (1,) * self.dim
        for spectral, pointwise, film in zip(self.spectral, self.pointwise, self.film):
            scale, shift = film(emb).chunk(2, dim=1)
            z = spectral(h) + pointwise(h)
            h = h + F.gelu((1 + scale.reshape(view)) * z + shift.reshape(view))
        h = h[(..., *[slice(0, a.n) for a in grid.axes])]
        return self.project(h)


class NetworkEnsemble(nn.Module):
    """K backbones of one architecture, each trained on its own with its own seed (a deep
    ensemble, Lakshminarayanan et al. 2017), used as one backbone: row b of a batch goes
    through network b mod K, so K consecutive rows see every network once.

    Why: one network trained on a few weeks of fields is sure of sub-grid structure it
    has only learned from those weeks; networks trained from different initialisations
    and data orders agree where the data pin them down and disagree where they do not.
    Drawing the members of an ensemble from different networks puts that disagreement
    (the prior's epistemic uncertainty) into the spread, and averages the networks' errors
    in the ensemble mean. A member must see one network along its whole trajectory: the
    callers keep the row of a member fixed and split batches only at multiples of K
    (:meth:`chunk_size`, :func:`hdm.conditioning.ensembles.draw_members`).

    ``config`` is the members' own plus ``"ensemble": K`` (what a checkpoint records).
    ``vectorised`` (class or instance attribute): False runs the networks one after the
    other for every batch (``python -m benchmarks network_ensemble_speed`` times the two).
    """

    vectorised: bool = True

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 networks, got {len(members)}")
        first = dict(members[0].config)
        for k, member in enumerate(members[1:], 1):
            if dict(member.config) != first:
                raise ValueError(
                    f"network {k} of the ensemble is {member.config}, network 0 {first}: "
                    "the networks of an ensemble share one architecture"
                )
        self.members = nn.ModuleList(members)
        # network 0's architecture without weights (meta tensors), for functional_call; in
        # a list so that it is not a submodule (no state_dict entries, no .to)
        self._template = [copy.deepcopy(members[0]).to("meta")]
        self._stack: tuple | None = None
        self.config = {**first, "ensemble": len(members)}
        self.channels = members[0].channels
        self.static_channels = members[0].static_channels
        self.condition_inputs = getattr(members[0], "condition_inputs", 0)

    @property
    def cpu_chunk_bytes(self) -> int:
        """The networks' CPU chunk budget (:class:`TimeConditionedFNO`); setting it sets
        every network's and that of the vectorised call's weightless copy, so both paths
        chunk alike."""
        return self.members[0].cpu_chunk_bytes

    @cpu_chunk_bytes.setter
    def cpu_chunk_bytes(self, value: int) -> None:
        for network in [*self.members, *self._template]:
            network.cpu_chunk_bytes = value

    @property
    def n_networks(self) -> int:
        """K, the number of networks."""
        return len(self.members)

    def chunk_size(self, x: torch.Tensor, grid: Grid, budget: int | None = None) -> int:
        """The first network's chunk for ``budget`` rounded up to a multiple of K, so that
        a chunk's row b is the batch's row b mod K as well (the same network)."""
        size = self.members[0].chunk_size(x, grid, budget)
        return min(max(x.shape[0], 1), self.n_networks * -(-size // self.n_networks))

    def _stacked_weights(self) -> tuple[dict, dict]:
        """The K networks' parameters and buffers stacked along a new first axis (detached:
        an ensemble samples, each network is trained as a model of its own), rebuilt when
        any member's tensors change (``load_state_dict``, ``.to``, an optimiser step)."""
        tensors = [*self.members.parameters(), *self.members.buffers()]
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)
        if self._stack is None or self._stack[0] != key:
            with torch.no_grad():
                params, buffers = stack_module_state(list(self.members))
            self._stack = (key, params, buffers)
        return self._stack[1], self._stack[2]

    def forward(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        grid: Grid,
        statics: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """F(x, τ) as :meth:`TimeConditionedFNO.forward`, rows b = k, k + K, ... through
        network k; (batch, C, *grid.shape).

        A batch of a multiple of K rows runs the K networks as one vectorised call
        (``torch.func.vmap`` over the stacked weights, ``functional_call`` on a weightless
        copy of network 0): one call of the whole batch instead of K calls of batch / K
        rows. With the shipped UK prior (K = 4, width 16, 16 fields of 33 × 49, 2-core
        CPU; ``python -m benchmarks network_ensemble_speed``) one field of ``hdm
        downscale``'s defaults takes 9.6 s instead of 16.9 s (network 0 alone: 11.5 s): an
        NFE with the input gradient that guidance takes is 136 instead of 178 ms, a plain
        NFE the same (80 / 78 ms). Other batches go through the networks one after the
        other; both give the same output to float rounding."""
        batch, k_networks = x.shape[0], self.n_networks
        if not self.vectorised or batch == 0 or batch % k_networks:
            return self._forward_each(x, tau, grid, statics, condition)
        groups = batch // k_networks

        def by_network(t: torch.Tensor) -> torch.Tensor:  # row j K + k -> [k, j]
            return t.reshape(groups, k_networks, *t.shape[1:]).transpose(0, 1)

        def one_network(params, buffers, xk, tk, ck):
            args = (xk, tk, grid, statics) if ck is None else (xk, tk, grid, statics, ck)
            return functional_call(self._template[0], (params, buffers), args)

        params, buffers = self._stacked_weights()
        cond = None if condition is None else by_network(condition)
        out = vmap(one_network, in_dims=(0, 0, 0, 0, None if cond is None else 0))(
            params, buffers, by_network(x), by_network(tau), cond
        )
        return out.transpose(0, 1).reshape(x.shape)

    def _forward_each(
        self,
        x: torch.Tensor,
        tau: torch.Tensor,
        grid: Grid,
        statics: torch.Tensor | None,
        condition: torch.Tensor | None,
    ) -> torch.Tensor:
        """Rows b = k, k + K, ... through network k, one network after the other."""
        out = x.new_empty(x.shape)
        for k, member in enumerate(self.members):
            rows = slice(k, None, self.n_networks)
            if x[rows].shape[0] == 0:
                continue
            args = (x[rows], tau[rows], grid)
            if statics is not None or condition is not None:
                args += (statics,)
            if condition is not None:
                args += (condition[rows],)
            out[rows] = member(*args)
        return out
