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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("hdm")

__all__ = ["keep_freed_memory"]

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
