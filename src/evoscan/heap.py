"""glibc's heap, kept to what the search uses. Long query loops allocate and free many buffers of
a few KB to a few MB; glibc keeps what is freed for reuse, and the resident memory then follows
the most ever held rather than what is held (benchmarks/rss_by_query.py, docs/scaling.md).
Elsewhere (another C library) these do nothing: its allocator is its own."""

from __future__ import annotations

import ctypes

MMAP_THRESHOLD = 128 * 1024  # glibc's initial M_MMAP_THRESHOLD, kept fixed (`hand_back_freed_memory`)


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if hasattr(libc, "mallopt"):
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def hand_back_freed_memory() -> None:
    """Keep glibc's mmap threshold fixed. glibc raises it to the size of each large block freed,
    so the query loop's many temporaries of a few MB then come from its heap, which fragments:
    resident memory grew by ~3 KB per query with nothing kept (0.3 KB is the results), ~2.5 GB
    over a million queries (benchmarks/rss_by_query.py). Above a fixed threshold every such
    block is mapped and handed back when freed, at no measured cost in time."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD


def trim() -> None:
    """Hand the heap's free pages back to the system (small blocks freed in the middle of the heap
    are otherwise kept resident)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
