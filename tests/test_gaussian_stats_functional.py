"""``hdm gaussian-stats`` on a functional model: no advice to give ``--heldout``, which
only a gridded model's data (periods of time) can follow, and ``--heldout`` refused in
one line."""

from __future__ import annotations

import logging
import shutil

import pytest

from hdm.domains.shipped import shipped_checkpoint
from hdm.hilbert.gaussian import TeleportError
from hdm.pipelines.cli import main
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics


@pytest.fixture
def quadratic(tmp_path):
    """A copy of the shipped 1-D functional model's folder (statistics are written there)."""
    folder = tmp_path / "quadratic"
    shutil.copytree(shipped_checkpoint("quadratic").parent, folder)
    return folder


def test_cli_heldout_on_a_functional_model_is_one_line_naming_why(quadratic, capsys):
    assert main(["gaussian-stats", str(quadratic), "--heldout", "2019-03-22..2019-03-24"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--heldout takes a period of a gridded model's data" in err
    assert f"{quadratic / 'model.pt'} is a model of x ∈ [-10, 10]" in err
    assert "unknown gridded dataset" not in err
    assert not (quadratic / "gaussian.pt").exists()


def test_the_warning_for_a_functional_model_does_not_advise_heldout(quadratic, caplog):
    with caplog.at_level(logging.WARNING, logger="hdm"):
        stats, out = gaussian_statistics(quadratic, GaussianStatsConfig(levels=3, max_fields=8))
    assert out.exists() and stats.curve is not None
    (warning,) = [r.getMessage() for r in caplog.records if "measuring ς*" in r.getMessage()]
    assert "give --heldout" not in warning
    assert "--heldout is for gridded models" in warning and "--varsigma-star" in warning
    with pytest.raises(TeleportError, match="leave --heldout out"):
        gaussian_statistics(quadratic, GaussianStatsConfig(heldout=("2019-03-22", "2019-03-24")))
