"""hdm's benchmarks: scripts that measure speed, memory and quality and write their tables
into BENCHMARKS.md. A top-level folder of the repository, never installed with hdm (the
package imports nothing from here).

    python -m benchmarks --help            # the benchmarks and studies, one line each
    python -m benchmarks NAME [--quick] [options]

:mod:`benchmarks.report` holds what they share (the repository root, the machine
description and the one writer of BENCHMARKS.md sections); ``benchmarks/README.md`` says
which command writes which section.
"""
