"""hdm.allocator: freed tensor memory is reused instead of being mapped afresh."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource, sys, torch
from hdm.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = 16 * 2**20                            # 64 MiB float32 tensors, above glibc's mmap limit
x = torch.ones(n); y = x * 2; del x, y    # first use
before = faults()
for _ in range(3):                        # a network layer's pattern: input, output, free
    x = torch.ones(n); y = x * 2; del x, y
print((faults() - before) / (3 * 2 * n * 4 // 4096))
"""


def _faults_per_page(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def test_kept_memory_is_reused_instead_of_faulted_in_again():
    default = _faults_per_page("default")
    kept = _faults_per_page("keep")
    assert default > 0.9  # glibc maps every 64 MiB block afresh: a fault per page
    assert kept < 0.75 * default  # freed blocks are reused: fewer new pages
