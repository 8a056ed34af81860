"""``hdm gaussian-stats`` and teleported downscaling on the shipped UK t2m data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale
from hdm.downscaling.prior import load_prior
from hdm.hilbert.augmentation import gaussian_lowpass
from hdm.hilbert.checkpoints import CheckpointError, load_gaussian
from hdm.hilbert.covariance import SpectralCovariance
from hdm.hilbert.gaussian import GaussianStatistics, TeleportError
from hdm.hilbert.grids import Axis, GlobalGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP
from hdm.pipelines.cli import main
from hdm.pipelines.gaussian_stats import (
    DEFAULT_SHRINK_LOWPASS,
    GaussianStatsConfig,
    gaussian_statistics,
    heldout_fields,
    shrink_toward_lowpassed_q,
)

UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
QUICK = GaussianStatsConfig(levels=6, max_fields=8)


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    """A copy of the tiny model's folder with its Gaussian statistics."""
    folder = tmp_path_factory.mktemp("teleport") / "model"
    shutil.copytree(load_prior(tiny_model.path).path.rsplit("/", 1)[0], folder)
    gaussian_statistics(folder, QUICK)
    return folder


@pytest.fixture(scope="module")
def coarse():
    truth = open_fields(UK_FILE, "t2m", time=slice("2019-03-25T00", "2019-03-25T00"))["t2m"]
    return coarse_grain(truth.load(), 4)


def test_gaussian_stats_keep_every_mode_and_measure_both_denoisers(model_dir):
    stats = load_gaussian(model_dir / "model.pt")
    curve = stats.curve
    assert stats.shrinkage is None  # the default: the sample covariance as it is
    assert stats.rank == stats.n_fields - 1 and stats.explained == pytest.approx(1.0)
    assert stats.mean.shape == (1, 33, 49) and torch.isfinite(stats.basis).all()
    assert len(curve["varsigma"]) == 6 and curve["n_fields"] == 8
    # at the top of the range x_t holds little of x_0 (only its largest modes, where C
    # dwarfs Q): the Gaussian denoiser returns about the mean, whose error is the anomaly
    # itself; at the bottom it returns about x_0
    assert 0.5 < curve["gaussian_error"][-1] <= 1.05
    assert curve["gaussian_error"][0] < 0.2 * curve["gaussian_error"][-1]
    assert (model_dir / "gaussian_curve.png").stat().st_size > 10_000


def test_gaussian_stats_measure_on_a_period_the_network_never_saw(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    period = ("2019-03-25T00", "2019-03-25T05")  # after the tiny model's training period
    cfg = GaussianStatsConfig(levels=6, max_fields=8, heldout=period)
    stats, _ = gaussian_statistics(folder, cfg)
    curve = stats.curve
    assert curve["fields"] == "2019-03-25T00..2019-03-25T05" and curve["n_fields"] == 6
    assert curve["n_fit"] == stats.n_fields  # the basis of every training field
    # the curve's fields are the period's, in the model's normalisation (a round trip)
    prior = load_prior(folder)
    held = heldout_fields(folder / "model.pt", period, prior.grid)
    truth = open_fields(UK_FILE, "t2m", time=slice(*period))["t2m"].values
    back = prior.normaliser.denormalise(held.double().numpy())[:, 0]
    np.testing.assert_allclose(back, truth, atol=1e-3)
    # a date-only end covers its whole day: 24 hours of 03-24 are training fields
    with pytest.raises(TeleportError, match=r"overlaps the training period .*\(24 time steps\)"):
        heldout_fields(folder / "model.pt", ("2019-03-24", "2019-03-24"), prior.grid)


def test_the_shrunk_gaussian_adds_smooth_variance_to_the_sample_covariance(
    model_dir, coarse, tmp_path
):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    sample = load_gaussian(model_dir / "model.pt")
    cfg = GaussianStatsConfig(varsigma_star=1.0, shrink=0.3)
    shrunk, _ = gaussian_statistics(folder, cfg)
    assert shrunk.shrinkage["lowpass_cells"] == DEFAULT_SHRINK_LOWPASS
    assert shrunk.rank > sample.n_fields - 1  # full-rank directions the days lack
    run = dict(members=1, steps=2, teleport=1.0, progress=False)
    attrs = downscale(load_prior(folder), coarse, **run).attrs
    assert "shrunk 0.7 C + 0.3 s L Q L^T, low-pass 2.0 cells" in attrs["teleport_gaussian"]
    c0, c1 = sample.covariance(), shrunk.covariance()
    record = shrunk.shrinkage
    prior = load_prior(model_dir)
    q = prior.denoiser.process.covariance.dense(prior.grid)
    # s = tr C / tr Q: Q rescaled to the data's total variance
    assert record["scale"] == pytest.approx(np.trace(c0) / np.trace(q), rel=1e-6)
    weight = record["weight"]
    added = (c1 - (1 - weight) * c0) / weight  # s L Q Lᵀ, up to float32 storage
    assert np.abs(added - added.T).max() < 1e-4 * np.abs(added).max()
    # the closed form with L as a matrix: column j is the low-pass of the unit field e_j
    h, w = prior.grid.shape
    d = h * w
    unit = torch.eye(d, dtype=torch.float64).reshape(d, 1, h, w)
    low = gaussian_lowpass(unit, record["lowpass_cells"]).reshape(d, d).numpy().T
    field = torch.randn(1, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(
        low @ field.reshape(-1).numpy(),
        gaussian_lowpass(field, record["lowpass_cells"]).reshape(-1),
    )
    expected = record["scale"] * low @ q @ low.T
    assert np.abs(added - expected).max() < 1e-3 * np.abs(expected).max()
    # smoother than Q: neighbouring points more correlated
    i = (h // 2) * w + w // 2
    corr_added = added[i, i + 1] / np.sqrt(added[i, i] * added[i + 1, i + 1])
    assert corr_added > q[i, i + 1] / np.sqrt(q[i, i] * q[i + 1, i + 1])


def test_shrinkage_refuses_a_periodic_grid_where_the_lowpass_would_reflect():
    sphere = GlobalGrid((Axis(-90, 90, 9, False, "lat"), Axis(-180, 180, 16, True, "lon")))
    rng = np.random.default_rng(0)
    stats = GaussianStatistics.fit(torch.as_tensor(rng.standard_normal((5, 1, 9, 16))), sphere)
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.15, 2.5))
    with pytest.raises(TeleportError, match=r"without periodic axes.*--shrink 0"):
        shrink_toward_lowpassed_q(stats, process, 0.3, 2.0)


def test_cli_shrinkage_weight_out_of_range_is_one_line(model_dir, capsys):
    assert main(["gaussian-stats", str(model_dir), "--shrink", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shrinkage weight must lie in [0, 1)" in err


def test_cli_heldout_period_must_be_start_dot_dot_end(model_dir, capsys):
    assert main(["gaussian-stats", str(model_dir), "--heldout", "2019-03-25"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a period is START..END" in err


def test_cli_heldout_period_outside_the_data_names_the_file_and_its_times(model_dir, capsys):
    assert main(["gaussian-stats", str(model_dir), "--heldout", "2018-01-01..2018-01-02"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "the period 2018-01-01..2018-01-02 selects no time step" in err
    assert f"data {UK_FILE} (its times run 2019-03-01T00:00..2019-03-31T23:00)" in err
    assert "model.pt" not in err


def test_teleported_downscaling_starts_at_the_given_level(model_dir, coarse):
    prior = load_prior(model_dir)
    ds = downscale(prior, coarse, members=2, steps=3, teleport=1.0, progress=False)
    assert np.isfinite(ds["t2m"].values).all()
    assert ds.attrs["teleport_varsigma"] == 1.0 and ds.attrs["nfe_per_member"] == 5
    plain = downscale(prior, coarse, members=2, steps=3, teleport=None, progress=False)
    assert plain.attrs["teleport_varsigma"] == "none"
    # the store says which Gaussian the members started from (here: the sample covariance)
    g = prior.gaussian
    assert ds.attrs["teleport_gaussian"] == f"{g.rank} modes from {g.n_fields} training fields"
    assert plain.attrs["teleport_gaussian"] == "none"
    assert not np.allclose(ds["t2m"].values, plain["t2m"].values)


def test_the_default_teleports_where_the_statistics_are_and_not_elsewhere(
    tiny_model, model_dir, coarse
):
    """teleport "available" (the default): the measured ς* of a model with statistics on
    the grid sampled; from t_max for a model without them and on a zero-shot grid, where
    "auto" is an error."""
    from hdm.domains.shipped import shipped_path

    assert EnsembleConfig().teleport == "available"
    shipped = load_prior(shipped_path("checkpoints/uk_t2m"))
    star = shipped.gaussian.varsigma_star
    run = dict(members=1, steps=2, runaway_bound=None, progress=False)
    assert star is not None and downscale(shipped, coarse, **run).attrs["teleport_varsigma"] == star
    zero_shot = downscale(shipped, coarse, scale=2, **run)
    assert zero_shot.attrs["teleport_varsigma"] == "none"
    with pytest.raises(TeleportError, match="cannot be transferred to"):
        downscale(shipped, coarse, scale=2, teleport="auto", **run)
    # no statistics; statistics without a measured ς* (too few levels to meet the criterion)
    assert downscale(tiny_model, coarse, **run).attrs["teleport_varsigma"] == "none"
    assert load_gaussian(model_dir / "model.pt").varsigma_star is None
    assert downscale(load_prior(model_dir), coarse, **run).attrs["teleport_varsigma"] == "none"


def test_teleportation_errors_name_what_is_missing(tiny_model, model_dir, coarse):
    with pytest.raises(TeleportError, match=r"has none \(gaussian.pt .*hdm gaussian-stats"):
        downscale(tiny_model, coarse, members=1, steps=2, teleport=1.0, progress=False)
    prior = load_prior(model_dir)
    with pytest.raises(TeleportError, match="cannot be transferred to"):
        downscale(prior, coarse, members=1, steps=2, teleport=1.0, scale=2, progress=False)
    with pytest.raises(TeleportError, match=r"ς\* = 10000 .*outside"):
        downscale(prior, coarse, members=1, steps=2, teleport=1e4, progress=False)
    with pytest.raises(ValueError, match="teleport must be available, auto, none or a noise level"):
        EnsembleConfig(teleport="fast")


def test_statistics_of_another_model_are_refused(model_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    payload = torch.load(other / "model.pt", weights_only=True)
    payload["exported_from_step"] = -1  # another file: another hash
    torch.save(payload, other / "model.pt")
    with pytest.raises(CheckpointError, match="was made for the model with sha256"):
        load_prior(other)


def test_cli_teleport_without_statistics_is_one_line_and_exit_code_2(tiny_model, tmp_path, capsys):
    out = tmp_path / "x.zarr"
    code = main(
        [
            "downscale",
            tiny_model.path,
            "--truth",
            str(UK_FILE),
            "--factor",
            "4",
            "--teleport",
            "auto",
            "--out",
            str(out),
            "--times",
            "2019-03-25T00",
            "2019-03-25T00",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "hdm gaussian-stats" in err
    assert "Traceback" not in err and not out.exists()


def test_hdm_sample_teleports_a_functional_model_on_its_own_grid(tmp_path, capsys):
    from hdm.domains.shipped import shipped_path

    folder = tmp_path / "quadratic"
    shutil.copytree(shipped_path("checkpoints/quadratic"), folder)
    stats, _ = gaussian_statistics(folder, GaussianStatsConfig(levels=5, max_fields=16))
    # the Quadratic curves a x² + ε span few directions: far fewer modes than curves
    assert 1 < stats.rank < stats.n_fields // 10 and stats.explained == pytest.approx(1.0)
    model, out = str(folder / "model.pt"), tmp_path / "s.nc"
    run = ["--n", "8", "--steps", "4", "--no-progress", "--teleport", "2.0"]
    assert main(["sample", model, *run, "--out", str(out)]) == 0
    ds = xr.open_dataset(out)
    assert ds.attrs["teleport_varsigma"] == 2.0 and ds.attrs["nfe"] == 7
    assert np.isfinite(ds["y"].values).all()
    assert main(["sample", model, *run, "--points", "50", "--out", str(tmp_path / "t.nc")]) == 2
    assert "cannot be transferred to x ∈ [-10, 10] (closed, 50 points)" in capsys.readouterr().err


def test_unconditional_fields_teleported_from_a_low_level_lie_in_the_training_modes(tmp_path):
    """``hdm sample --teleport`` of a gridded model: from ς* = 0.05 each field is the
    Gaussian's draw m + B z with little noise left to denoise, so it lies in the span of
    the training fields' modes up to ~ς*; a draw from t_max does not."""
    from hdm.domains.shipped import shipped_path
    from hdm.pipelines.sample import sample_fields

    folder = shipped_path("checkpoints/uk_t2m")
    prior = load_prior(folder)
    g = prior.gaussian
    modes, _ = np.linalg.qr(g.basis.reshape(g.rank, -1).numpy().T)
    mean = g.mean.reshape(-1).numpy()

    def outside_modes(ds: xr.Dataset) -> np.ndarray:
        """|x − m − P(x − m)| / |x − m| of each normalised field (P: onto the modes)."""
        x = prior.normaliser.normalise(ds[["t2m"]])["t2m"].values.reshape(len(ds["sample"]), -1)
        x = x - mean
        return np.linalg.norm(x - (x @ modes) @ modes.T, axis=1) / np.linalg.norm(x, axis=1)

    run = dict(n=4, sampler="heun", steps=3, progress=False)
    low = sample_fields(folder, teleport=0.05, **run)
    assert low.attrs["teleport_varsigma"] == 0.05 and low.attrs["nfe"] == 5
    assert np.isfinite(low["t2m"].values).all()
    assert outside_modes(low).max() < 0.03
    plain = sample_fields(folder, **run)
    assert plain.attrs["teleport_varsigma"] == "none"
    assert outside_modes(plain).min() > 0.05
    # through the CLI, and refused on a grid the statistics were not computed on
    out = tmp_path / "s.nc"
    assert main(["sample", str(folder), "--n", "2", "--steps", "3", "--teleport", "auto",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    assert xr.open_dataset(out).attrs["teleport_varsigma"] == g.varsigma_star
    with pytest.raises(TeleportError, match="cannot be transferred to"):
        sample_fields(folder, teleport="auto", scale=2, **run)
