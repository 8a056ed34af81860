"""Is the UK ensemble's larger spread along the domain edges warranted? (issue 4)

The ensemble-std maps of the demo and the test week are larger in the outermost rows and
columns than inside. This script reads a downscaled store (default: the test-week run of
``python -m benchmarks downscale --parts uk``, ``runs/benchmark-downscale/uk_x1_28.zarr``)
and the ERA5 truth, and compares, for the border (the outermost ``--border`` grid rows
and columns) and the interior, the RMSE of the ensemble mean with the RMS ensemble
spread (ddof = 1), both averaged over all times:

    rmse = sqrt(mean_{t, cells} (mean_t − truth_t)²),  spread = sqrt(mean_{t, cells} std_t²),

plus one row per edge (its outermost line of cells). Equal spread ÷ RMSE on the border and
inside means the wider border spread matches a larger border error. Run

    python -m benchmarks uk_edge_calibration [STORE] [--border 2]

It writes section ``uk-edges`` of BENCHMARKS.md. Unweighted cell means (the cells of one
row share their area).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import (
    BENCHMARKS_FILE,
    PROJECT_ROOT,
    command_line,
    machine_description,
    parser,
    write_section,
)
from hdm.data.open import open_fields
from hdm.data.stores import open_store
from hdm.domains.atmosphere import GRIDDED_DATASETS

#: the test-week store of ``python -m benchmarks downscale --parts uk``
DEFAULT_STORE = PROJECT_ROOT / "runs" / "benchmark-downscale" / "uk_x1_28.zarr"


def edge_rows(store: Path, border: int) -> list[dict]:
    """RMSE of the mean and RMS spread on the border, inside and on each edge line."""
    ds = open_store(store).load()
    if "t2m_mean" not in ds or "t2m_std" not in ds:
        raise SystemExit(f"{store} has no t2m_mean/t2m_std: not an hdm downscale store")
    truth = open_fields(GRIDDED_DATASETS["uk_t2m"].resolved_path(), "t2m")["t2m"]
    truth = truth.sel(time=ds["time"].values).load().values
    if truth.shape != ds["t2m_mean"].shape:
        raise SystemExit(
            f"{store} is on a {ds['t2m_mean'].shape[1:]} grid, the truth on {truth.shape[1:]}"
        )
    err2 = ((ds["t2m_mean"].values - truth) ** 2).mean(0)
    var = (ds["t2m_std"].values ** 2).mean(0)
    ny, nx = err2.shape
    if not 0 < border < min(ny, nx) // 2:
        raise SystemExit(f"--border must be between 1 and {min(ny, nx) // 2 - 1}")
    rim = np.zeros((ny, nx), dtype=bool)
    rim[:border], rim[-border:], rim[:, :border], rim[:, -border:] = True, True, True, True
    masks = {
        f"border ({border} cells)": rim,
        "interior": ~rim,
        "north row": np.s_[-1:, :],
        "south row": np.s_[:1, :],
        "west column": np.s_[:, :1],
        "east column": np.s_[:, -1:],
    }
    rows = []
    for name, where in masks.items():
        rmse, spread = float(np.sqrt(err2[where].mean())), float(np.sqrt(var[where].mean()))
        rows.append({"where": name, "rmse": rmse, "spread": spread, "ratio": spread / rmse})
    return rows


def format_section(rows: list[dict], border: int) -> str:
    """Section ``uk-edges`` (the command, machine and date are added by
    :func:`benchmarks.report.write_section`)."""
    table = "\n".join(
        f"| {r['where']} | {r['rmse']:.3f} | {r['spread']:.3f} | {r['ratio']:.3f} |" for r in rows
    )
    return f"""## UK t2m: spread and error along the domain edges

RMSE of the ensemble mean and RMS ensemble spread over all times of the store, on the
outermost {border} rows and columns, inside them, and on each edge line (K).

| cells | RMSE of the mean | spread | spread ÷ RMSE |
|---|---|---|---|
{table}

Border ÷ interior: RMSE {rows[0]["rmse"] / rows[1]["rmse"]:.2f}×, spread
{rows[0]["spread"] / rows[1]["spread"]:.2f}×, spread ÷ RMSE {rows[0]["ratio"]:.3f} vs
{rows[1]["ratio"]:.3f}.
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_edge_calibration [STORE] [--border 2]``."""
    p = parser("uk_edge_calibration", __doc__)
    p.add_argument("store", nargs="?", type=Path, default=DEFAULT_STORE)
    p.add_argument("--border", type=int, default=2)
    args = p.parse_args(list(argv))
    if not args.store.exists():
        p.error(f"{args.store} does not exist: run `python -m benchmarks downscale --parts uk`")
    machine = machine_description()
    rows = edge_rows(args.store, args.border)
    store = args.store.resolve()
    shown = store.relative_to(PROJECT_ROOT) if store.is_relative_to(PROJECT_ROOT) else store
    # the command names the store and the border even when they were the defaults
    given = [str(shown), "--border", str(args.border)]
    if args.benchmarks_file != BENCHMARKS_FILE:
        given += ["--benchmarks-file", str(args.benchmarks_file)]
    command = command_line("uk_edge_calibration", given)
    write_section(
        args.benchmarks_file,
        "uk-edges",
        format_section(rows, args.border),
        command=command,
        machine=machine,
    )
    for r in rows:
        print(f"{r['where']}: rmse {r['rmse']:.3f} spread {r['spread']:.3f} ratio {r['ratio']:.3f}")
    return rows
