"""Keep freed tensor memory in the process (glibc): fewer page faults for large tensors.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` on free. The FNO's activations at 128² and beyond
are far above that, so each network call maps new pages and faults every one of them in:
on this project's 2-core benchmark machine a 128 × 128 call of 16 members spent more time
in the kernel than in arithmetic (5.2 s per call, 22 s of system time in a 36 s run; with
this setting 2.1 s per call and 4 s of system time; BENCHMARKS.md, downscale-speed).
:func:`keep_freed_memory` changes that for the running process with ``mallopt``: no mmap
for blocks (``M_MMAP_MAX = 0``: they come from the heap) and no trimming of the heap
below 2 GiB of free space (``M_TRIM_THRESHOLD``), so much of the memory freed by one call
is reused by the next (a probe of 64 MiB tensors: a third fewer page faults). The cost:
the process keeps its peak heap and the heap fragments: the same benchmark at 512 × 512
(16 members) grew to 24.3 GB resident and was killed for memory on a 24 GiB machine,
where the default allocator peaks at 16.0 GB. So it is opt-in, not called by the ``hdm``
commands: call it once in a process that samples or trains on grids of about 128² whose
peak memory is well below the machine's. Elsewhere than glibc (macOS, musl) it does
nothing.

Transparent huge pages (:func:`use_huge_pages`) are the other way round the page
faults: with ``THP_MEM_ALLOC_ENABLE=1`` in the environment before torch loads, torch
maps its CPU tensors of 2 MB and more on 2 MiB pages (madvise), 512× fewer faults, and
returns them on free, so the peak heap is not kept. Measured on the benchmark machine
(BENCHMARKS.md, downscale-speed, the same command with and without): a guided NFE of 16
members (MMPS, 5 CG steps) takes 2.30 s instead of 2.51 s at 128², 7.6 s instead of
11.1 s at 256² and 60 s instead of 95 s at 512² (measured alone: 58 vs 104 s, 2.2 against
68.6 million page faults per call), and a whole UK field 0–8 % less
(``python -m benchmarks allocator_speed``); but a plain NFE (no autograd) takes longer from 128² on:
224 vs 187 ms, 0.87 vs 0.70 s and 7.8 vs 3.4 s at 512². So ``hdm downscale``, ``hdm
process-new`` and ``hdm demo``, whose NFEs are guided, turn it on (unless the variable
is set), and nothing else does. When it is on, torch maps large tensors itself and
:func:`keep_freed_memory` no longer reaches them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("hdm")

__all__ = ["keep_freed_memory", "use_huge_pages"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DONE = False


def keep_freed_memory() -> bool:
    """Apply the glibc settings above once per process; True when they are in effect."""
    global _DONE
    if _DONE:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only
    except (OSError, AttributeError):
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _DONE = ok
    if ok:
        log.debug("glibc %s: freed memory kept for reuse", gnu_get_libc_version().decode())
    return ok


def use_huge_pages() -> bool:
    """Ask torch for transparent huge pages under its CPU tensors of 2 MB and more
    (``THP_MEM_ALLOC_ENABLE=1``, see the module doc), unless the variable is already set.

    Only effective before torch is imported (it reads the variable at its first
    allocation); child processes (Dask workers) inherit it. Returns True when huge pages
    will be used by torch in this process."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    wanted = os.environ["THP_MEM_ALLOC_ENABLE"] not in ("0", "")
    if wanted and "torch" in sys.modules:
        log.debug("torch is already imported: THP_MEM_ALLOC_ENABLE applies to new processes")
        return False
    return wanted
