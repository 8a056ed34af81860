"""The downscaling benchmark (benchmarks/downscale.py): the GRF exactness rows, the speed
rows and their tables; the studies that build on them."""

from __future__ import annotations

import math

import pytest

from benchmarks.downscale import (
    EXACTNESS_HEADER,
    SPEED_HEADER,
    TELEPORT_LEVEL,
    format_exactness,
    format_speed,
    format_teleport,
    grf_exactness,
    grf_teleport,
    sampling_speed,
)
from benchmarks.report import write_section
from benchmarks.studies import fno_chunking, grf_trained_64, network_ensemble_speed
from benchmarks.uk import shipped_prior


@pytest.fixture(scope="module")
def exact_rows():
    # 15 Heun steps: with 10 the oracle's spread is 1.23 × the exact one on this grid
    # (the sampler's discretisation error, see run_grf_benchmark), 15 gives 1.09.
    return grf_exactness(n=12, members=200, steps=15, methods=("mmps",), quick=True)


@pytest.fixture(scope="module")
def speed_rows():
    return sampling_speed(quick=True)


def test_oracle_mmps_reproduces_the_closed_form_posterior(exact_rows):
    (row,) = exact_rows
    numbers = ("mean_error", "mc_floor", "std_ratio", "coverage_exact", "coverage_truth")
    assert all(math.isfinite(row[k]) for k in numbers)
    assert row["status"] == "ok" and row["nonfinite_members"] == 0
    assert row["nfe"] == 2 * 15 - 1
    assert row["mean_error"] < 0.1
    assert 0.8 <= row["std_ratio"] <= 1.2
    assert 0.8 <= row["coverage_exact"] <= 1.0


def test_teleported_rows_start_at_the_level_and_keep_the_posterior_width():
    rows = grf_teleport(n=12, members=100, samplers=("dpm2m",), noise=(0.1,), steps=(25, 8))
    _, full_teleported, _, teleported = rows
    assert [r["teleport"] for r in rows] == [None, TELEPORT_LEVEL, None, TELEPORT_LEVEL]
    assert [r["nfe"] for r in rows] == [26, 26, 9, 9]
    for row in (full_teleported, teleported):
        assert row["status"] == "ok" and 0.85 <= row["std_ratio"] <= 1.15
    table = format_teleport(rows)
    assert f"| 0.1 | dpm2m | 8 | {TELEPORT_LEVEL:g} | 9 |" in table


def test_v3_rows_use_the_oracles_statistics_and_teleport_exactly():
    rows = grf_teleport(n=12, members=100, samplers=("v3",), noise=(0.1,), steps=(13, 9))
    assert [(r["steps"], r["teleport"], r["nfe"]) for r in rows] == [
        (13, None, 14), (13, TELEPORT_LEVEL, 14), (9, None, 10), (9, TELEPORT_LEVEL, 10),
    ]  # fmt: skip
    teleported = rows[-1]
    assert teleported["status"] == "ok" and 0.85 <= teleported["std_ratio"] <= 1.15


def test_sampling_speed_times_are_positive(speed_rows):
    assert [r["n"] for r in speed_rows] == [32, 64]
    for r in speed_rows:
        assert r["skipped"] is None
        assert math.isfinite(r["plain_ms"]) and r["plain_ms"] > 0
        assert math.isfinite(r["guided_ms"]) and r["guided_ms"] > 0
    assert next(r for r in speed_rows if r["n"] == 64)["nlogn_ratio"] == 1.0


def test_tables_have_their_columns_and_verdicts(exact_rows, speed_rows, tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    write_section(md, "downscale-grf-quick", format_exactness(exact_rows), command="pytest")
    write_section(md, "downscale-speed-quick", format_speed(speed_rows), command="pytest")
    exact, speed = md.read_text().split("<!-- downscale-speed-quick:start -->")
    assert all(name in exact for name in EXACTNESS_HEADER)
    assert all(name in speed for name in SPEED_HEADER)
    assert "✓" in exact or "✗" in exact
    assert "✓" in speed or "✗" in speed
    arch = speed_rows[0]["architecture"]  # the shipped UK prior's size, from its config
    assert f"width {arch['width']}, {arch['n_modes'][0]} × {arch['n_modes'][1]} modes" in speed
    for text in (exact, speed):
        assert "Command: `pytest`" in text and "Machine:" in text and "Date:" in text
        assert "nan" not in text.lower()


def test_skipped_sizes_and_guided_calls_say_so():
    measured = {"members": 2, "skipped": None, "plain_ms": 10.0, "total_s": 1.0}
    measured.update(plain_ratio=1.0, nlogn_ratio=1.0, reference_n=64, repeats=(3, 3))
    rows = [
        {**measured, "n": 64, "guided_ms": 50.0, "guided_skipped": None, "cg_iterations": 5},
        {**measured, "n": 128, "guided_skipped": "predicted 90 s per guided call"},
        {"n": 512, "members": 2, "skipped": "predicted 300 s per plain call, budget 60 s"},
    ]
    text = format_speed(rows)
    assert "guided skipped: predicted 90 s" in text
    assert "skipped: predicted 300 s per plain call" in text
    widths = {line.count("|") for line in text.splitlines() if line.startswith("|")}
    assert widths == {len(SPEED_HEADER) + 1}


def test_trained_rows_report_the_networks_own_dispersion():
    from benchmarks.downscale import grf_trained

    rows = grf_trained(
        n=12, members=8, steps=5, methods=("replacement",), quick=True, train_steps=20
    )
    (row,) = rows
    assert row["train_steps"] == 20 and row["model"] == "trained FNO"
    assert math.isfinite(row["prior_std_ratio"]) and row["prior_std_ratio"] > 0
    text = format_exactness(rows)
    assert f"std ratio to the prior {row['prior_std_ratio']:.3f}" in text
    assert set(row["prior_bands"]) == set(row["spread_by_band"]) == {"0-0.5", "0.5-1", "1-2", "2-"}
    assert "Where the best method's spread is" in text


def test_band_power_puts_a_wave_in_its_band_of_the_coarse_nyquist():
    import numpy as np

    from benchmarks.downscale import band_power
    from hdm.hilbert.grids import RectGrid

    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (64, 64))
    lat, lon = grid.coords()
    k_c = 1.0 / (2 * 4 * (lat[1] - lat[0]))  # the ×4 cells' Nyquist, cycles per unit
    wave = np.sin(2 * np.pi * 0.75 * k_c * lat)[:, None] * np.ones_like(lon)[None, :]
    bands = band_power(wave.reshape(1, -1), grid)
    assert all(math.isfinite(v) and v >= 0 for v in bands.values())
    assert bands["0.5-1"] > 0.95 * sum(bands.values())


def test_spread_by_band_is_one_for_exact_draws_and_scales_with_the_variance():
    from benchmarks.downscale import grf_problem, spread_by_band

    problem = grf_problem(32)
    exact = problem.exact_draws
    same = spread_by_band(exact, problem)
    assert list(same) == ["0-0.5", "0.5-1", "1-2", "2-"] and None not in same.values()
    assert all(v == pytest.approx(1.0) for v in same.values())
    doubled = exact.mean(0) + 2.0 * (exact - exact.mean(0))
    assert all(v == pytest.approx(4.0) for v in spread_by_band(doubled, problem).values())
    assert spread_by_band(exact[:1], problem) is None


def test_trained_benchmark_script_rejects_a_single_member(capsys):
    with pytest.raises(SystemExit):
        grf_trained_64.main(["--members", "1"])
    assert "--members ≥ 2" in capsys.readouterr().err


def test_chunking_script_times_every_budget_per_grid(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    argv = ["--sizes", "16", "--repeats", "2", "--guided-repeats", "1", "--field-repeats", "0"]
    argv += ["--benchmarks-file", str(out)]
    uk, square = fno_chunking.main(argv)
    mib = 2**20
    # UK grid: 64 × 96 mirror-extended points × width 16 × 4 bytes = 384 KiB per member
    assert uk["shape"] == (33, 49)
    assert uk["chunk"] == {0: 16, mib: 2, 4 * mib: 8, 16 * mib: 16}
    assert square["chunk"] == {0: 16, mib: 16, 4 * mib: 16, 16 * mib: 16}
    for row in (uk, square):
        assert all(len(v) == 2 and min(v) > 0 for v in row["plain"].values())
        assert set(row["guided"]) == {0, 4 * mib}
    text = out.read_text()
    assert "<!-- fno-chunking:start -->" in text and "| 33×49 | 16 / 2 / 8 / 16 |" in text
    assert "python -m benchmarks fno_chunking --sizes 16 --repeats 2" in text
    header, rule = text.split("| grid |")[1].splitlines()[:2]
    assert rule.count("---") == header.count("|") + 1  # one rule cell per column
    line = fno_chunking.format_field({0: [2.0, 3.0], 4 * mib: [1.0, 1.5]})
    assert "whole batch 2.5 s, 4 MiB chunks 1.2 s per field (2.00×;" in line


def test_chunking_script_rejects_tiny_grids(capsys):
    with pytest.raises(SystemExit):
        fno_chunking.main(["--sizes", "4"])
    assert "--sizes wants grid sizes of at least 8: '4'" in capsys.readouterr().err


def test_network_ensemble_speed_times_each_variant_and_restores_the_prior(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    argv = ["--repeats", "1", "--field-repeats", "0", "--benchmarks-file", str(out)]
    results = network_ensemble_speed.main(argv)
    assert set(results) == {"plain NFE", "NFE with gradient"}
    for timed in results.values():
        assert set(timed) == set(network_ensemble_speed.VARIANTS)
        assert all(len(v) == 1 and v[0] > 0 for v in timed.values())
    text = out.read_text()
    assert "python -m benchmarks network_ensemble_speed --repeats 1" in text
    assert text.count("| network 0 alone |") == 1
    # a variant swaps the backbone or the flag only while it runs
    prior = shipped_prior()
    ensemble = prior.denoiser.backbone
    with network_ensemble_speed.variant(prior.denoiser, "network 0 alone"):
        assert prior.denoiser.backbone is ensemble.members[0]
    with network_ensemble_speed.variant(prior.denoiser, "one after the other"):
        assert ensemble.vectorised is False
    assert prior.denoiser.backbone is ensemble and ensemble.vectorised is True
    table = network_ensemble_speed.format_table(
        {
            "plain NFE": {v: [0.04] for v in network_ensemble_speed.VARIANTS},
            "NFE with gradient": {v: [0.1] for v in network_ensemble_speed.VARIANTS},
            "field": {"vectorised": [8.0], "one after the other": [12.0], "network 0 alone": [9.0]},
        },
        1,
    )
    assert "| one after the other | 40 (40–40) | 100 (100–100) | 12.0 (12.0–12.0) | 1.50 |" in table
