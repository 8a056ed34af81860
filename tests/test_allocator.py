"""hdm.allocator: large tensors come from the reusable heap instead of fresh mmaps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    # With 4 KiB pages: hdm's default huge pages (below) have torch map large tensors itself.
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "THP_MEM_ALLOC_ENABLE": "0"},
    )
    return out.stdout.strip().splitlines()[-1] == "True"


def test_large_tensors_come_from_the_heap_once_freed_memory_is_kept():
    assert not _from_heap("default")  # glibc maps a 64 MiB block on its own
    assert _from_heap("keep")  # M_MMAP_MAX = 0: from the heap, reusable after free


THP_PROBE = """
import sys
if sys.argv[1] == "huge":
    from hdm.allocator import use_huge_pages
    use_huge_pages()
import torch
x = torch.ones(16 * 2**20)               # 64 MiB
p, inside, huge = x.data_ptr(), False, 0
for line in open("/proc/self/smaps"):
    parts = line.split()
    if "-" in parts[0]:
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        inside = lo <= p < hi
    elif inside and parts[0] == "AnonHugePages:":
        huge = int(parts[1])
        break
print(huge > 0)
"""
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _huge_pages(mode: str, env: dict) -> bool:
    """Whether a 64 MiB tensor lies on transparent huge pages in a new process."""
    clean = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run(
        [sys.executable, "-c", THP_PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**clean, **env},
    )
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.skipif(
    not THP_MODE.exists() or "[madvise]" not in THP_MODE.read_text(),
    reason="the kernel gives huge pages on request only in THP mode 'madvise'",
)
def test_huge_pages_back_large_tensors_when_asked_for_before_torch_loads():
    assert _huge_pages("huge", {})
    assert not _huge_pages("default", {})
    assert not _huge_pages("huge", {"THP_MEM_ALLOC_ENABLE": "0"})  # the user's choice wins


def test_huge_pages_cannot_reach_an_already_imported_torch(monkeypatch):
    import torch  # noqa: F401

    from hdm.allocator import use_huge_pages

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert use_huge_pages() is False
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"  # for the processes it starts
