"""The functional benchmark: ``python benchmarks/functional.py [--quick]``.

Same as ``hdm benchmark functional [--quick]``: writes its tables into BENCHMARKS.md
(see :mod:`hdm.pipelines.benchmark` for what is measured and how).
"""

import sys

from hdm.pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "functional", *sys.argv[1:]]))
