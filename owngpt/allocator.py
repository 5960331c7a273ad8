"""The C library's allocator, kept from taxing every step (no torch: the CLI calls it before torch is imported)."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_ENV = "OWNGPT_MALLOC"  # "default" leaves the C library's allocator as it is


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS at once (once per
    process; True when done). By default glibc serves every allocation over 128 KiB-32 MiB (PyTorch's activations,
    logits, KV caches) with a fresh mmap and unmaps it when freed, and trims the heap top above 128 KiB, so every
    training or decoding step page-faults its tensors in again (on the quickstart's pretraining, a quarter of the
    wall time went to the kernel). Here allocations up to 1 GiB come from the heap, freed memory is kept up to
    2 GiB above the top, and the heap grows 64 MiB at a time. The peak memory stays what the program's largest
    working set needs (freed memory is reused, not leaked). Linux with glibc only (a no-op elsewhere, e.g. musl,
    macOS); OWNGPT_MALLOC=default turns it off. CLI verbs call it at start, `fit()` and generation when they run."""
    if os.environ.get(MALLOC_ENV, "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt, version = libc.mallopt, libc.gnu_get_libc_version  # AttributeError: not glibc
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, (1 << 31) - 1), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)
