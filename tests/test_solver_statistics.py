"""The DPM-Solver-v3-style sampler and its empirical model statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.fft
import torch

from hdm.hilbert.covariance import CovarianceOperator
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.devices import draw_device
from hdm.hilbert.gaussian import GaussianStart, GaussianStatistics
from hdm.hilbert.grids import RectGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.sampling import make_sampler
from hdm.hilbert.schedules import CosineVP
from hdm.hilbert.solver_statistics import (
    S_CLIP,
    ModelStatistics,
    SolverStatisticsError,
    cosine_forward,
    cosine_inverse,
    estimate_model_statistics,
)

GRID = RectGrid((0.0, 1.0), (0.0, 1.0), (6, 8))
MODES = np.add.outer(np.arange(6) ** 2, np.arange(8) ** 2).astype(float)


@dataclass(frozen=True)
class CosineDiagonal(CovarianceOperator):
    """Q diagonal in the orthonormal cosine basis, eigenvalues ``scale``/(1 + k²)^2: a
    Q that the v3 statistics' basis diagonalises exactly (the test's closed form)."""

    scale: float = 1.0

    def eigenvalues(self) -> torch.Tensor:
        return torch.as_tensor(self.scale / (1.0 + MODES) ** 2)

    def sample(self, n, grid, generator=None, dtype=torch.float32, device=None):
        z = torch.randn(
            n, *grid.shape, generator=generator, dtype=torch.float64, device=draw_device(generator)
        )
        out = cosine_inverse(z * self.eigenvalues().sqrt().to(z.device), grid)
        return out.to(dtype=dtype, device=device)

    def apply(self, g, grid):
        c = cosine_forward(g, grid) * self.eigenvalues().to(g.device)
        return cosine_inverse(c, grid).to(g.dtype)

    def to_dict(self):
        return {"kind": "cosine-diagonal"}


PROCESS = ForwardProcess(CosineVP(), CosineDiagonal())


def _basis() -> np.ndarray:
    """The orthonormal cosine basis as a matrix (grid.size, grid.size): rows are modes."""
    eye = np.eye(GRID.size).reshape(GRID.size, *GRID.shape)
    return scipy.fft.dctn(eye, axes=(1, 2), norm="ortho").reshape(GRID.size, -1).T


def _gaussian(mean: float = 0.7):
    """Data N(m, C) with C cosine-diagonal (other decay than Q): its denoiser is linear
    with a cosine-diagonal Jacobian, so the statistics make f independent of y."""
    c = 2.0 / (1.0 + MODES.ravel()) ** 1.2
    m = _basis()
    cov = m.T @ np.diag(c) @ m
    return GaussianDenoiser(PROCESS, GRID, cov, mean=mean), c


def _statistics(denoiser, mean, c, n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, GRID.size, generator=gen, dtype=torch.float64) * torch.as_tensor(c).sqrt()
    fields = mean + cosine_inverse(z.reshape(n, 1, *GRID.shape), GRID)
    lambdas = np.linspace(-4.5, 6.5, 45)
    return estimate_model_statistics(denoiser, fields, GRID, lambdas, gen, batch_size=32)


def test_cosine_transform_is_scipys_orthonormal_dct_and_inverts():
    u = torch.randn(3, 1, *GRID.shape, dtype=torch.float64)
    c = cosine_forward(u, GRID)
    np.testing.assert_allclose(c.numpy(), scipy.fft.dctn(u.numpy(), axes=(2, 3), norm="ortho"))
    torch.testing.assert_close(cosine_inverse(c, GRID), u)


def test_statistics_of_a_diagonal_gaussian_are_its_closed_form():
    denoiser, c = _gaussian()
    stats = _statistics(denoiser, 0.7, c)
    q = PROCESS.covariance.eigenvalues().numpy().ravel()
    for k in (0, 20, 44):
        v2 = np.exp(-2 * float(stats.lambdas[k]))
        gain = c / (c + v2 * q)  # the Jacobian of D in y, per cosine mode
        np.testing.assert_allclose(stats.l[k, 0].numpy().ravel(), gain, atol=1e-3)
    # f = D − l y is (1 − l) m̂ (plus l's estimation error times y): b is its λ-slope,
    # −l' m̂ on the mean's mode (m̂₀ = 0.7 √48), zero on the others (s = 0 by default)
    lam = stats.lambdas.numpy()
    slope = -np.gradient(np.stack([c[0] / (c[0] + np.exp(-2 * v) * q[0]) for v in lam]), lam)
    np.testing.assert_allclose(stats.b[:, 0, 0, 0].numpy(), slope * 0.7 * 48**0.5, atol=0.02)
    assert float(stats.s.abs().max()) == 0.0 and float(stats.b[:, 0, 3, 3].abs().max()) < 0.02
    fitted = estimate_model_statistics(
        denoiser, torch.zeros(4, 1, *GRID.shape) + 0.7, GRID, [0.0, 1.0], fit_s=True
    )
    assert float(fitted.s.abs().max()) <= S_CLIP


def test_v3_samples_the_gaussian_in_few_steps_where_dpm2m_does_not_and_teleports():
    denoiser, c = _gaussian()
    stats = _statistics(denoiser, 0.7, c)
    m = _basis()

    def mode_variance(sampler):
        gen = torch.Generator().manual_seed(1)
        x = sampler(denoiser, 4000, GRID, generator=gen).samples.double().reshape(4000, -1)
        coeff = (x - x.mean(0)).numpy() @ m.T
        return coeff.var(0) / c, float(x.mean())

    # 4,000 draws: |ratio − 1| of 48 modes reaches 0.068 with the exact statistics
    ratio, mean = mode_variance(make_sampler("v3", 5, stats))
    assert np.abs(ratio - 1).max() < 0.1 and abs(mean - 0.7) < 0.02
    dpm_ratio, _ = mode_variance(make_sampler("dpm2m", 5))
    assert np.abs(dpm_ratio - 1).max() > 0.15
    # teleported: from the exact marginal at ς* = 1, three steps below it
    m_grid = _basis()
    cov = m_grid.T @ np.diag(c) @ m_grid
    start = GaussianStart(GaussianStatistics.from_covariance(cov, GRID, 0.7), PROCESS, 1.0)
    gen = torch.Generator().manual_seed(2)
    result = make_sampler("v3", 3, stats)(denoiser, 4000, GRID, generator=gen, start=start)
    x = result.samples.double().reshape(4000, -1)
    ratio = ((x - x.mean(0)).numpy() @ m_grid.T).var(0) / c
    assert result.nfe == 4 and np.abs(ratio - 1).max() < 0.1


def test_v3_without_statistics_or_on_another_grid_says_what_to_do():
    denoiser, c = _gaussian()
    with pytest.raises(SolverStatisticsError, match="hdm model-stats MODEL_DIR"):
        make_sampler("v3", 5)(denoiser, 2, GRID)
    stats = _statistics(denoiser, 0.7, c, n=8)
    other = RectGrid((0.0, 1.0), (0.0, 1.0), (12, 16))
    with pytest.raises(SolverStatisticsError, match="cannot be transferred to"):
        stats.check_grid(other)
    saved = ModelStatistics.from_dict(stats.to_dict())
    assert saved.grid == GRID and saved.l.shape == stats.l.shape


# ------------------------------------------------------------- the pipeline, tiny model


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    """A copy of the tiny model's folder with its v3 statistics."""
    import shutil

    from hdm.pipelines.model_stats import ModelStatsConfig, model_statistics

    folder = tmp_path_factory.mktemp("v3") / "model"
    shutil.copytree(tiny_model.path.rsplit("/", 1)[0], folder)
    model_statistics(folder, ModelStatsConfig(levels=4, fields=4), progress=False)
    return folder


def test_v3_downscales_with_the_stored_statistics_on_their_grid_only(model_dir):
    from hdm.data.coarsen import coarse_grain
    from hdm.data.open import open_fields
    from hdm.domains.atmosphere import GRIDDED_DATASETS
    from hdm.downscaling.core import downscale
    from hdm.downscaling.prior import load_prior

    uk = GRIDDED_DATASETS["uk_t2m"].resolved_path()
    truth = open_fields(uk, "t2m", time=slice("2019-03-25T00", "2019-03-25T00"))["t2m"]
    coarse = coarse_grain(truth.load(), 4)
    prior = load_prior(model_dir)
    stats = prior.solver_statistics
    assert stats.l.shape == (4, 1, 33, 49) and stats.grid == prior.grid
    # the tiny model is barely trained: its members are not weather (no run-away bound)
    ds = downscale(
        prior, coarse, members=2, sampler="v3", steps=3, progress=False, runaway_bound=None
    )
    assert ds.attrs["nfe_per_member"] == 4 and np.isfinite(ds["t2m"].values).all()
    with pytest.raises(SolverStatisticsError, match="cannot be transferred to"):
        downscale(prior, coarse, members=1, sampler="v3", steps=2, scale=2, progress=False)


def test_v3_without_statistics_names_the_command(tiny_model, tmp_path, capsys):
    from hdm.domains.shipped import shipped_path
    from hdm.pipelines.cli import main

    model = str(shipped_path("checkpoints/quadratic") / "model.pt")
    run = ["sample", model, "--n", "2", "--sampler", "v3", "--steps", "3"]
    assert main([*run, "--out", str(tmp_path / "s.nc")]) == 2
    err = capsys.readouterr().err
    assert "hdm model-stats" in err and "Traceback" not in err
    from hdm.downscaling.core import check_solver_statistics

    with pytest.raises(SolverStatisticsError, match=r"has none .*hdm model-stats"):
        check_solver_statistics(tiny_model, tiny_model.grid, "v3")


def test_hdm_downscale_with_v3_and_no_statistics_refuses_before_making_a_store(
    tiny_model, tmp_path, capsys
):
    from hdm.pipelines.cli import main

    out = tmp_path / "v3.zarr"
    run = ["downscale", tiny_model.path, "--truth", str(_uk_file()), "--factor", "4"]
    times = ["--times", "2019-03-25T00", "2019-03-25T00", "--members", "2", "--steps", "3"]
    assert main([*run, *times, "--sampler", "v3", "--out", str(out), "--no-progress"]) == 2
    assert "hdm model-stats" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".v3.zarr*"))


def _uk_file():
    from hdm.domains.atmosphere import GRIDDED_DATASETS

    return GRIDDED_DATASETS["uk_t2m"].resolved_path()
