"""Process-level settings that make CPU training fast, applied by the commands that train.

On glibc, every tensor larger than the mmap threshold (at most 32 MB) is
mapped fresh from the kernel and unmapped on free, so each new activation
tensor of a training step page-faults its way in: on 2 cores a fresh 70 MB
tensor costs as much as seven elementwise passes over it.  Disabling mmap for
malloc keeps freed blocks in the heap for reuse -- what the PyTorch CPU
performance guide achieves by preloading jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep freed large blocks in the heap (glibc only); returns whether it applied.

    Safe to call more than once; a no-op on other C libraries and platforms.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    _tuned = ok
    return ok
