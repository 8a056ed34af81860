"""hdm.allocator: large tensors come from the reusable heap instead of fresh mmaps."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, torch
from hdm.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(16 * 2**20)               # 64 MiB, above glibc's largest mmap threshold
ptr = x.data_ptr()
heap = [line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
lo, hi = (int(v, 16) for v in heap[0].split("-"))
print(lo <= ptr < hi)
"""


def _from_heap(mode: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1] == "True"


def test_large_tensors_come_from_the_heap_once_freed_memory_is_kept():
    assert not _from_heap("default")  # glibc maps a 64 MiB block on its own
    assert _from_heap("keep")  # M_MMAP_MAX = 0: from the heap, reusable after free
