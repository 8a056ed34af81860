"""Data-layer benchmark: writes the ``data`` section of BENCHMARKS.md.

    python benchmarks/data_benchmark.py --quick      # tiny smoke run (seconds)
    python benchmarks/data_benchmark.py              # >= 20 GB stream, 5 GB store

The same as ``hdm benchmark data [--quick]`` (see :mod:`hdm.data.benchmark`).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from hdm.data.benchmark import run_data_benchmark

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--work-dir", type=Path, default=None, help="for the zarr store")
    parser.add_argument("--uk-path", type=Path, default=None, help="ERA5 UK t2m netCDF")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = "python benchmarks/data_benchmark.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    run_data_benchmark(
        args.quick, args.out, work_dir=args.work_dir, uk_path=args.uk_path, command=command.strip()
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
