"""Large blocks straight from the OS, so that freeing them gives the memory back (glibc only).

glibc serves blocks under its mmap threshold (128 KiB at start, raised as large blocks are freed,
up to 32 MiB) from its heaps. A long-lived block there (a prompt kept for feedback, a cached answer)
among short-lived ones (the request body, its parsed text, token lists) pins the heap pages around
it, so memory grows several times faster than what is kept: bench/soak.py with 32 MiB of kept
110 KB prompts grew the router by ~290 MiB, and by ~40 MiB with a fixed 64 KiB threshold. A fixed
threshold also turns off glibc's raising of it. Blocks that size cost an mmap and a munmap each,
which is small beside handling 64 KiB of text.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 64 * 1024


def large_blocks_from_the_os(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap threshold; False where there is no glibc (macOS, musl) or it refuses."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not done:
        log.warning("could not set the allocator's mmap threshold: memory may grow with large prompts")
    return done
