"""The example notebooks run end to end (small, through their HDM_NB_* parameters) and
each leaves one checkable fact in the JSON summary printed by its last cell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: Small settings: 2 members, Heun 10 steps (19 NFE), 1–2 times, 50 curves.
SMALL = {
    "quickstart": {"HDM_NB_MEMBERS": "2", "HDM_NB_STEPS": "10", "HDM_NB_TIMES": "1"},
    "functional": {
        "HDM_NB_CURVES": "50",
        "HDM_NB_STEPS": "10",
        "HDM_NB_SR_FACTOR": "2",
        "HDM_NB_QUICK": "1",
    },
    "evaluation": {"HDM_NB_MEMBERS": "2", "HDM_NB_STEPS": "10", "HDM_NB_TIMES": "2"},
}


def run_notebook(name: str, out: Path, monkeypatch) -> tuple[nbformat.NotebookNode, dict]:
    """Execute examples/NAME.ipynb in examples/ with the small settings; return the
    executed notebook and the JSON summary its last code cell prints."""
    for key, value in {**SMALL[name], "HDM_NB_OUT": str(out), "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    client.execute()
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    return nb, json.loads(text.strip().splitlines()[-1])


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def test_notebooks_are_clean_and_start_with_a_parameters_cell():
    for name in SMALL:
        nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), name
        assert all(not c.outputs and c.execution_count is None for c in code), name
        for key in SMALL[name]:
            assert key in code[0].source, (name, key)


def test_quickstart_downscales_to_a_finite_ensemble_on_the_fine_grid(tmp_path, monkeypatch):
    nb, summary = run_notebook("quickstart", tmp_path, monkeypatch)
    # The kernel is this interpreter (the venv's), and its working directory examples/.
    assert f"python : {sys.executable}" in _stdout(nb)
    # The map written by hdm.plotting and the inline pyplot transect both show: importing
    # hdm.plotting left the notebook's inline backend alone.
    assert _images(nb) == 2
    assert summary["shape"] == [2, 1, 33, 49]
    assert summary["dims"] == ["member", "time", "lat", "lon"]
    # the members differ: two float32 members coincide at a point only by chance (about 1e-4
    # of the points at a 0.2 K spread), so a zero std at one point is no collapse
    assert summary["finite"] and summary["mean_std"] > 0.05
    assert summary["zero_std_fraction"] < 0.01
    # 19 NFE and two members already put the ensemble mean closer to the truth than
    # bicubic interpolation of the coarse input.
    assert summary["rmse_ensemble_mean"] < summary["rmse_bicubic"]
    assert {"quickstart_maps.png", "quickstart.nc"} <= set(summary["written"])
    assert sorted(p.name for p in tmp_path.iterdir()) == summary["written"]


def test_functional_samples_cover_the_test_curves_in_their_bands(tmp_path, monkeypatch):
    _, summary = run_notebook("functional", tmp_path, monkeypatch)
    assert summary["dataset"] == "quadratic"
    assert summary["shape"] == [50, 100] and summary["fine_shape"] == [50, 199]
    assert summary["finite"]
    # The generated curves' pointwise 5–95 % band holds about 90 % of the real test values.
    assert 0.8 < summary["coverage90"] < 0.98
    assert summary["coverage50"] < summary["coverage90"]
    assert 0 <= summary["power_null"] <= 100 and 0 <= summary["power_rigorous"] <= 100
    assert {"quadratic-samples.nc", "quadratic.png"} <= set(summary["written"])


def test_evaluation_scores_against_baselines_and_writes_plots(tmp_path, monkeypatch):
    _, summary = run_notebook("evaluation", tmp_path, monkeypatch)
    assert summary["times"] == 2 and summary["members"] == 2
    for key in ("rmse", "rmse_bicubic", "rmse_kriging", "crps", "crps_kriging", "spread_skill"):
        assert np.isfinite(summary[key]), key
    # Every grid point of every time is ranked once and falls in one spread–skill bin.
    assert summary["rank_histogram_total"] == summary["points"] == 2 * 33 * 49
    assert summary["spread_skill_bin_total"] == summary["points"]
    assert summary["plots"] == [
        "evaluation_rank_histogram.png",
        "evaluation_spectra.png",
        "evaluation_spread_skill.png",
    ]
    assert summary["metrics_json"] == "evaluation_metrics.json"
    assert summary["metrics_json_rmse"] == summary["rmse"]
    assert set(summary["plots"]) | {"evaluation.nc", "evaluation_metrics.json"} == set(
        summary["written"]
    )
