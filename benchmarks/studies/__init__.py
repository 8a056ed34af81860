"""One-off studies: each answers one question about speed or calibration and writes its
own section of BENCHMARKS.md; run them with ``python -m benchmarks NAME`` (``python -m
benchmarks --help`` lists them)."""
