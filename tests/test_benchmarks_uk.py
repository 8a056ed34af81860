"""The UK benchmark (benchmarks/uk.py): the spectrum comparison across resolutions, the
sampler and Q choices, the data's difficulty, and the studies that build on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from benchmarks.studies import uk_cg_steps
from benchmarks.uk import spectra_at_shared_wavenumbers


def _ensemble(scale: float, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    lat, lon = np.linspace(50, 58, 33), np.linspace(-10, 2, 49)
    values = scale * rng.standard_normal((8, 1, 33, 49))
    da = xr.DataArray(
        values, dims=("member", "time", "lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    return da.to_dataset(name="t2m")


def test_identical_ensembles_have_identical_spectra():
    out = spectra_at_shared_wavenumbers(_ensemble(1.0), _ensemble(1.0), "t2m")
    assert out["shared_bins"] > 5
    assert out["max_rel_diff"] == 0.0 and out["frac_within_2se"] == 1.0


def test_doubled_amplitude_quadruples_the_power():
    out = spectra_at_shared_wavenumbers(_ensemble(2.0), _ensemble(1.0), "t2m")
    assert out["mean_rel_diff"] == pytest.approx(3.0, rel=1e-9)
    assert out["frac_within_2se"] < 0.1
    # independent members: no bin is held by the ensemble mean; the deviations carry 4×
    assert out["mean_field_bins"] == 0 and np.isnan(out["mean_field_rel_diff"])
    assert out["deviation_rel_diff"] == pytest.approx(3.0, rel=1e-9)


def _refined(base: xr.Dataset, seed: int = 1) -> xr.Dataset:
    """A 2× ensemble whose every other point is ``base`` and whose new points are noise."""
    lat = np.linspace(50, 58, 2 * base.sizes["lat"] - 1)
    lon = np.linspace(-10, 2, 2 * base.sizes["lon"] - 1)
    values = np.random.default_rng(seed).standard_normal((8, 1, len(lat), len(lon)))
    values[..., ::2, ::2] = base["t2m"].values
    da = xr.DataArray(
        values, dims=("member", "time", "lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    return da.to_dataset(name="t2m")


def test_restriction_to_shared_points_removes_the_lattice_difference():
    from benchmarks.uk import spectra_at_shared_points

    base = _ensemble(1.0)
    out = spectra_at_shared_points(_refined(base), base, "t2m")
    assert out["max_rel_diff"] == 0.0 and out["frac_within_2se"] == 1.0
    assert np.isfinite(out["lattice_mean_rel_diff"])


def test_shared_points_need_a_refined_grid():
    from benchmarks.uk import spectra_at_shared_points

    base = _ensemble(1.0)
    shifted = _refined(base).assign_coords(lon=np.linspace(-9, 3, 97))
    with pytest.raises(ValueError, match="lon: the fine points at a stride of 2 are not"):
        spectra_at_shared_points(shifted, base, "t2m")
    uneven = _refined(base).isel(lat=slice(0, 40))
    with pytest.raises(ValueError, match="lat: 40 fine points are not a refinement of 33"):
        spectra_at_shared_points(uneven, base, "t2m")


def test_sampler_choice_scores_each_candidate_on_a_training_day(tmp_path):
    from benchmarks.uk import run_sampler_choice

    md = tmp_path / "B.md"
    rows = run_sampler_choice(True, md, "python -m benchmarks downscale --quick --parts sampler")
    assert [(r["sampler"], r["nfe"]) for r in rows] == [("heun", 11), ("sde2m", 4)]
    for r in rows:
        assert all(np.isfinite(r[k]) for k in ("rmse", "crps", "spread_skill", "spectrum_ratio"))
        assert r["rmse"] > 0 and np.isnan(r["coverage90"])  # 2 members resolve no 90 % interval
    text = md.read_text()
    assert "<!-- downscale-sampler:start -->" in text and "| sde2m 4 | 4 |" in text


def test_noise_choice_ranks_the_shipped_q_by_the_data_spectrum(tmp_path):
    """The shipped Q (Matérn-3/2, ℓ = 1°) follows the t2m spectrum (tilt near 1); the
    smoother Matérn-5/2 has several times too little power at high wavenumbers."""
    from benchmarks.uk import run_noise_choice

    md = tmp_path / "B.md"
    result = run_noise_choice(True, md, "python -m benchmarks downscale --quick --parts q")
    tilt = {(r["nu"], r["lengthscale"]): r["tilt"] for r in result["rows"]}
    assert all(np.isfinite(list(tilt.values())))
    assert 0.5 < tilt[(1.5, 1.0)] < 2.0
    assert tilt[(2.5, 1.0)] > 2.5
    assert min(tilt, key=lambda k: abs(np.log(tilt[k]))) == (1.5, 1.0)
    assert "← shipped" in md.read_text()
    (shipped,) = result["priors"]
    assert shipped["q"] == "Matérn(ν=1.5, ℓ=1)"
    assert 0.3 < shipped["std_ratio"] < 3 and np.isfinite(shipped["ratios"]).all()


def test_subgrid_difficulty_hours_partition_the_period():
    """Each period's mean square is the field-weighted mean of its per-hour mean squares,
    and the test week's fields are those of the benchmark (4 a day)."""
    from benchmarks.uk import FULL, subgrid_difficulty

    rows = subgrid_difficulty(FULL)
    assert [r["fields"] for r in rows] == [96, 28]
    for r in rows:
        assert set(r["by_hour"]) == {0, 6, 12, 18}
        per_hour = np.array(list(r["by_hour"].values()))
        assert np.all(np.isfinite(per_hour)) and np.all(per_hour > 0)
        assert r["rms"] ** 2 == pytest.approx(np.mean(per_hour**2), rel=1e-6)
        assert np.isfinite(r["rms_stations"]) and 0 < r["rms_stations"] < 5


def test_cg_steps_script_rejects_negative_steps(capsys):
    with pytest.raises(SystemExit):
        uk_cg_steps.main(["--cg-steps", "0,-1"])
    assert "--cg-steps wants non-negative integers: '0,-1'" in capsys.readouterr().err
    assert uk_cg_steps.parse_steps("0, 5") == [0, 5]


def test_bins_held_by_the_ensemble_mean_compare_the_means():
    base = _ensemble(0.01)
    common = np.random.default_rng(5).standard_normal((1, 1, 33, 49))
    base["t2m"] = base["t2m"] + common  # members = one field + small deviations
    scaled = base.copy(deep=True)
    scaled["t2m"] = 1.1 * base["t2m"]
    out = spectra_at_shared_wavenumbers(scaled, base, "t2m")
    assert out["mean_field_bins"] == out["shared_bins"]
    assert out["mean_field_rel_diff"] == pytest.approx(0.21, rel=1e-9)
    assert np.isnan(out["deviation_rel_diff"])


def test_coarse_grids_study_makes_the_grids_it_names():
    """uk_coarse_grids: the 1° grid offset by 0.25° is whole 0.25° cells (the operator's
    aligned path), the others cut them (the area-overlap path); every grid keeps at least
    4 cells per axis (bicubic needs them) and its cells tile the kept part of the domain."""
    from benchmarks.studies.uk_coarse_grids import GRIDS, coarse_field
    from hdm.conditioning.observations import CoarseGrain
    from hdm.data.coarsen import cell_bounds
    from hdm.data.schema import mock_fields
    from hdm.hilbert.grids import LatLonGrid

    uk = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))
    truth = mock_fields(["t2m"], n_time=1, n_lat=33, n_lon=49, lat=(50, 58), lon=(-10, 2))
    paths = []
    for grid in GRIDS[1:]:
        coarse = coarse_field(truth, grid)
        assert min(coarse.sizes["lat"], coarse.sizes["lon"]) >= 4, grid.label
        bounds = [cell_bounds(coarse, d) for d in ("lat", "lon")]
        for b in bounds:
            np.testing.assert_allclose(b[1:, 0], b[:-1, 1])  # contiguous
            np.testing.assert_allclose(np.diff(b, axis=1), grid.spacing)
        op = CoarseGrain.for_coarse_grid(coarse.lat.values, coarse.lon.values, uk, 0.1, *bounds)
        paths.append(op.samples_per_cell)
    assert paths == [(4, 4), None, None, None]


def test_the_fastest_setting_is_chosen_among_those_within_2_percent_of_the_best_crps():
    from benchmarks.studies.uk_validation_split import fastest_within

    rows = [
        {"crps": 0.120, "s_per_field": 9.0},
        {"crps": 0.1224, "s_per_field": 2.0},  # 2.0 % above the best: still in
        {"crps": 0.1226, "s_per_field": 1.0},  # 2.2 % above: out, however fast
    ]
    assert fastest_within(rows) is rows[1]
    assert fastest_within(rows, tolerance=0.03) is rows[2]


def test_the_shifted_validation_days_are_rougher_than_their_training_days():
    # the shifted split stands for the test week only if its days hold more t2m below the
    # coarse cells than the days its prior is trained on (ERA5 alone, no scores)
    from benchmarks.studies.uk_validation_split import SHIFT_TIMES, subcoarse_rms

    train = subcoarse_rms(slice("2019-03-12T00", "2019-03-24T23"))
    valid = subcoarse_rms(list(SHIFT_TIMES))
    assert (train["fields"], valid["fields"]) == (52, 14)
    assert valid["grid"] > 1.1 * train["grid"] and valid["stations"] > train["stations"]
    assert subcoarse_rms(list(SHIFT_TIMES), factor=1)["grid"] < 1e-9  # no coarse-graining


def test_the_shift_table_has_a_cell_per_column_and_names_the_start():
    from benchmarks.studies.uk_validation_split import SHIFT_HEADER, shift_section

    row = {
        "checkpoint": "runs/x", "factor": 4, "inflation_setting": None, "inflation": 1.0,
        "rmse": 0.28, "crps": 0.14, "spread_skill": 0.76, "coverage50": 0.49,
        "coverage90": 0.84, "power": 1.09, "laplacian_ratio_sea": 1.13,
        "laplacian_ratio_land": 1.02, "band_spread_skill": [0.9, 1.0, 0.77, 0.74, 0.85],
        "teleport": 0.5604, "train_period": "2019-03-12T00..2019-03-24T23",
        "train_steps": 2000, "sampler": "heun", "steps": 25,
    }  # fmt: skip
    rms = {"fields": 14, "grid": 0.6, "stations": 0.6}
    body = shift_section([row], rms, rms)
    (line,) = [x for x in body.splitlines() if x.startswith("| `runs/x`")]
    assert line.count("|") == SHIFT_HEADER.splitlines()[0].count("|")
    assert "0.90 / 1.00 / 0.77 / 0.74 / 0.85" in line
    assert "teleported from ς* = 0.56" in body
    assert "from t_max" in shift_section([{**row, "teleport": None}], rms, rms)


def test_the_bagging_study_tells_bagged_networks_from_seeds_and_fills_every_column(tmp_path):
    from benchmarks.studies import uk_bagged_ensemble as study
    from hdm.hilbert.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION

    def network(k: int, days: list[str] | None) -> None:
        folder = tmp_path / "run" / "networks" / str(k)
        folder.mkdir(parents=True)
        metadata = {} if days is None else {"bootstrap_days": {"seed": k, "days": days}}
        payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION}
        payload |= {"ema": {}, "network": {}, "process": {}, "grid": {}, "metadata": metadata}
        torch.save(payload, folder / "model.pt")

    for k in (1, 0, 10):  # the networks' order is numeric, not that of the names
        network(k, ["2019-03-02"] * 3 if k == 10 else ["2019-03-01", "2019-03-01", "2019-03-03"])
    folders = study.network_runs(tmp_path / "run")
    assert [f.name for f in folders] == ["0", "1", "10"]
    assert study.recipe_of(folders) == ("bagged days", "2/2/1 of 3")
    (tmp_path / "run" / "networks" / "10" / "model.pt").unlink()
    (tmp_path / "run" / "networks" / "10").rmdir()
    network(10, None)
    assert study.recipe_of(study.network_runs(tmp_path / "run"))[0] == "seeds"
    row = {
        "split": "shifted", "networks": 4, "recipe": "bagged days", "days": "9/9/8/10 of 13",
        "measured_varsigma": 0.91, "level": "0.5604", "factor": 8, "rmse": 0.45, "crps": 0.23,
        "spread_skill": 0.8, "coverage50": 0.5, "coverage90": 0.85, "power": 1.05,
        "laplacian_ratio_sea": 1.2, "laplacian_ratio_land": 1.1,
        "band_spread_skill": [0.7, 0.8, 0.8, 0.9, 1.0],
    }  # fmt: skip
    lines = study.section([row]).splitlines()
    header, table_row = lines[lines.index(study.HEADER.splitlines()[0])], lines[-1]
    assert header.count("|") == table_row.count("|")
    assert "| shifted | 4 × bagged days | 9/9/8/10 of 13 | 0.91 | 0.5604 | ×8 |" in table_row


def test_the_regime_study_reads_each_priors_days_and_scores_unseen_rough_days(tmp_path):
    from benchmarks.studies import uk_regime_coverage as study
    from hdm.hilbert.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION

    folder = tmp_path / "rough_days" / "networks" / "0"
    folder.mkdir(parents=True)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION}
    payload |= {"ema": {}, "network": {}, "process": {}, "grid": {}, "metadata": {}}
    torch.save(payload, folder / "model.pt")
    with pytest.raises(SystemExit, match=r"not trained with data\.train_days"):
        study.training_days(tmp_path / "rough_days")
    payload["metadata"] = {"train_days": ["2019-03-03", "2019-03-04"]}
    torch.save(payload, folder / "model.pt")
    assert study.training_days(tmp_path / "rough_days") == ["2019-03-03", "2019-03-04"]
    payload["metadata"] = {"train_days": ["2019-03-03", "2019-03-09"]}
    torch.save(payload, folder / "model.pt")
    with pytest.raises(SystemExit, match=r"trained on 2019-03-09, a scored day or one beside"):
        study.training_days(tmp_path / "rough_days")
    # the scored fields are 16, every 3 h of the two days, and in no prior's days nor beside them
    assert len(study.SCORED_TIMES) == 16 and study.SCORED_TIMES[1] == "2019-03-08T03"
    # rougher than the days of the rough prior: its truth departs more from the coarse field
    assert study.roughness(times=study.SCORED_TIMES[::4]) > study.roughness(["2019-03-03"])
    row = {
        "prior": "rough days", "n_days": 9, "train_rms": 0.6, "measured_varsigma": 0.5,
        "factor": 8, "level": 0.5604, "rmse": 0.45, "crps": 0.23, "spread_skill": 0.8,
        "coverage50": 0.5, "coverage90": 0.85, "power": 1.05, "laplacian_ratio_sea": 1.2,
        "laplacian_ratio_land": 1.1, "band_spread_skill": [0.7, 0.8, 0.8, 0.9, 1.0],
    }  # fmt: skip
    lines = study.section([row], 0.69).splitlines()
    header, table_row = lines[lines.index(study.HEADER.splitlines()[0])], lines[-1]
    assert header.count("|") == table_row.count("|")
    assert table_row.startswith("| rough days | 9 | 0.60 | 0.50 | 0.56 | ×8 | 0.450 |")
    # the calmer days beside the roughest are scored as their own section, in no prior either
    assert set(study.BESIDE_DAYS) < set(study.UNSEEN_DAYS)
    assert "12 fields (2019-03-07T00 … 2019-03-11T18)" in study.section([row], 0.55, "beside")


def test_the_evaluation_table_marks_the_ensemble_against_the_best_baseline():
    from benchmarks.studies.uk_evaluation import HEADER, table_rows

    row = {
        "period": "week", "factor": 8, "stations": "none", "rmse": 0.55, "rmse_bicubic": 1.0,
        "rmse_kriging": 0.8, "rmse_oi": 0.5, "crps": 0.28, "crps_kriging": 0.4,
        "crps_oi": 0.3, "heldout_rmse": 0.6, "heldout_rmse_kriging": 0.7,
        "heldout_rmse_oi": 0.65, "spread_skill": 0.7, "coverage50": 0.5, "coverage90": 0.9,
        "spectrum_ratio": 1.0, "laplacian_ratio_sea": 1.0, "laplacian_ratio_land": 1.0,
        "s_per_field": 10.0, "best_baseline_rmse": {"baseline": "oi", "value": 0.5},
        "best_baseline_crps": {"baseline": "oi", "value": 0.3},
        "coverage90_kriging": 0.84, "coverage90_oi": 0.76,
    }  # fmt: skip
    (line,) = table_rows([row])
    assert line.count("|") == HEADER.splitlines()[0].count("|")
    # RMSE beats kriging but loses to OI by 10 %; CRPS beats both
    assert "0.550 ✓ | 0.800 | 0.500 | 0.500 oi, ens. 0.550 ✗ (+10 %)" in line
    assert "0.300 oi, ens. 0.280 ✓" in line
    # the linear baselines' own 90 % coverage stands beside the ensemble's
    assert "| 0.900 ✓ | 0.840 / 0.760 |" in line


def test_generalisation_compares_the_training_tail_with_an_unseen_period(tiny_model):
    from benchmarks.studies.uk_generalisation import generalisation, section_body

    model = tiny_model.path
    result = generalisation(
        model, ("2019-03-25T00", "2019-03-25T03"), max_fields=5, levels=(0.1, 100.0)
    )
    # the tiny model trains on 03-01..24 hourly (576 fields): its last 20 % are 115
    assert result["seen"]["fields"] == 5 and result["unseen"]["fields"] == 4
    # at ς = 100 x_t holds almost nothing of x_0: the Gaussian returns about its mean
    assert 0.8 < result["seen"]["gaussian"][1] < 1.2
    assert result["unseen"]["gaussian"][0] < result["unseen"]["gaussian"][1]
    assert section_body(result).count("\n| ") == 3  # the header and one row per level


def _store_about_truth(path, spread_per_time, error_per_time, members: int = 16, seed: int = 0):
    """A store of uk_evaluation's layout around the ERA5 truth of four test-week times:
    members = truth + e_t η + s_t ξ_m with η shared and ξ_m per member (N(0, 1) per point),
    so the ensemble mean's error is ≈ e_t √(1 + s_t²/(M e_t²)) and the spread ≈ s_t."""
    from benchmarks.uk import UK
    from hdm.data.open import open_fields

    times = ["2019-03-25T00", "2019-03-25T06", "2019-03-25T12", "2019-03-25T18"]
    truth = open_fields(UK.resolved_path(), "t2m", time=times)["t2m"].load()
    rng = np.random.default_rng(seed)
    shape = truth.shape
    s = np.asarray(spread_per_time)[None, :, None, None]
    e = np.asarray(error_per_time)[None, :, None, None]
    values = truth.values[None] + e * rng.standard_normal((1, *shape))
    values = values + s * rng.standard_normal((members, *shape))
    ds = xr.Dataset(
        {
            "t2m": (("member", "time", "lat", "lon"), values.astype(np.float32)),
            "t2m_coarse": (("time", "coarse_lat", "coarse_lon"), np.zeros((4, 8, 12))),
        },
        coords={"time": truth["time"].values, "lat": truth["lat"], "lon": truth["lon"]},
    )
    ds.to_zarr(path)
    return path


def test_spread_by_time_tells_a_spread_that_follows_the_error_from_one_that_does_not(tmp_path):
    from benchmarks.studies.uk_spread_by_time import format_section, store_row, training_fields

    training = training_fields().isel(time=slice(0, 48))
    error = np.array([0.1, 0.2, 0.4, 0.8])
    # calibrated at every time: e_t η with the members' own spread e_t (fair ratio 1)
    follows = store_row(_store_about_truth(tmp_path / "week_x4_a.zarr", error, error), training)
    # the same spread 0.3 K at every time while the error grows 8×
    fixed = store_row(_store_about_truth(tmp_path / "week_x4_b.zarr", [0.3] * 4, error), training)
    assert follows["factor"] == 4 and follows["stations"] == "a" and follows["times"] == 4
    assert abs(follows["slope"] - 1) < 0.05 and abs(follows["pooled"] - 1) < 0.05
    assert all(abs(v - 1) < 0.05 for v in follows["by_hour"].values())
    assert abs(fixed["slope"]) < 0.05
    assert fixed["by_hour"][0] > 2 and fixed["by_hour"][18] < 0.5  # over- then under-dispersed
    assert set(follows["truth_rough"]) == {0, 6, 12, 18}
    assert "| `week_x4_a.zarr` | ×4 | a | 4 | 1.0" in format_section([follows, fixed])


def test_the_point_coarse_study_reads_one_lattice_three_ways():
    """uk_point_coarse: the same 9 × 13 whole-degree lattice as points (the truth's values
    there, said to be points), as those values said to be means, and as the truth's own
    1° means (which differ from the point values); the table has a cell per column."""
    from benchmarks.studies.uk_coarse_grids import FULL
    from benchmarks.studies.uk_point_coarse import coarse_inputs, format_section
    from hdm.data.schema import mock_fields
    from hdm.downscaling.inputs import point_sampled

    truth = mock_fields(["t2m"], n_time=1, n_lat=33, n_lon=49, lat=(50, 58), lon=(-10, 2))["t2m"]
    rows = coarse_inputs(truth)
    assert [point_sampled(c) for _, c in rows] == [True, False, False]
    points, as_means, means = (c for _, c in rows)
    for c in (points, as_means, means):
        assert (c.sizes["lat"], c.sizes["lon"]) == (9, 13)
    np.testing.assert_array_equal(points.values, truth.sel(lat=points.lat, lon=points.lon).values)
    np.testing.assert_array_equal(as_means.values, points.values)
    assert np.abs(means.values - points.values).max() > 0.01
    scores = dict.fromkeys(
        ("rmse", "crps", "spread_skill", "power", "laplacian_ratio_sea",
         "laplacian_ratio_land", "bilinear", "bicubic", "kriging", "oi", "s_per_field"), 1.0,
    )  # fmt: skip
    text = format_section([{"input": label, **scores} for label, _ in rows], FULL, False, 1.0)
    table = [ln for ln in text.splitlines() if ln.startswith("| 1°")]
    assert len(table) == 3 and all(ln.count("|") == 13 for ln in table)
