"""The server process's memory: how glibc's malloc is set up, and what it and Python hold.

Resident memory (RSS) alone cannot tell a leak from an allocator keeping freed memory for
reuse. The figures here can: memory malloc has handed out and not had back (``in_use``),
memory it holds free (``free``), and the blocks Python's own allocator has handed out.
They are served on ``/metrics`` and are what the soak test asserts on.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 64 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, where malloc is glibc's (2.33 or newer, for mallinfo2); else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.mallopt  # noqa: B018 - present on glibc only
        libc.open_memstream.restype = ctypes.c_void_p
        libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        libc.malloc_info.argtypes, libc.fclose.argtypes, libc.free.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p], [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return libc


def configure_malloc() -> None:
    """Set glibc's malloc up for a server that runs for months on many threads; call before the threads start.

    Arenas: the server's threads share 2 instead of up to 8 per core. The server runs
    requests on about 40 worker threads. glibc gives threads arenas of their own (16 on
    2 cores), and memory freed in one is reused only by the threads on it, so under
    a long load each arena kept its own free pieces and the server grew (in a 10-minute soak,
    memory malloc held free rose from 3 to 22 MB; with 2 arenas it ended at 7 to 15 MB in three runs).
    The growth of memory in use was another matter: DuckDB keeping ~2-3 KB per page query (see exchange.stores.keyed_store.page).

    Large blocks: a block of 64 KiB or more is mapped on its own and given back to the system
    when freed. glibc starts so (at 128 KiB) but raises its threshold to the size of each mapped
    block freed, up to 32 MiB; large blocks (bodies, result sets) then came from the heap and,
    freed between long-lived small ones, were kept there. In a 10-minute soak (32 clients,
    266 requests/s) the main heap grew 44 -> 55 MB, its free blocks of 64 KiB or more 1.1 -> 5.9 MB
    and RSS +8.5 MB from minute 1 to 10. With the threshold fixed at 64 KiB (the same soak, 271
    requests/s, no slower): the heap 43 -> 45 MB, those free blocks under 0.6 MB, RSS +2.0 MB.

    MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ in the environment, where set, are left to rule;
    nothing is done where malloc is not glibc's.
    """
    libc = _glibc()
    if libc is None:
        return
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # setting it also stops glibc moving it


@dataclass(frozen=True)
class MallocFigures:
    in_use: int  # bytes handed out and not freed, from the arenas and mapped directly
    free: int  # bytes freed into the arenas and kept there for reuse
    mapped: int  # of in_use, the bytes of large blocks mapped directly
    arenas: int  # arenas malloc has made (one per thread that met the others' busy, up to its limit)


def malloc_figures() -> MallocFigures | None:
    """glibc malloc's figures over all its arenas, or None where malloc is not glibc's."""
    libc = _glibc()
    if libc is None:
        return None
    info = libc.mallinfo2()
    return MallocFigures(in_use=info.uordblks + info.hblkhd, free=info.fordblks, mapped=info.hblkhd, arenas=_arenas(libc))


def _arenas(libc: ctypes.CDLL) -> int:
    # malloc_info writes an XML report with a <heap> per arena, here into memory (open_memstream).
    buffer, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    try:
        libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)
    report = ctypes.string_at(buffer, size.value)
    libc.free(buffer)
    return report.count(b"<heap nr=")


class MemoryCollector(Collector):
    """Gauges read at each scrape: malloc's figures, Python's allocated blocks, the keyed stores' buffers."""

    def __init__(self, keyed_store_memory: Callable[[], int]) -> None:
        self.keyed_store_memory = keyed_store_memory  # DuckDB allocates its buffers apart from malloc (its own jemalloc)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = malloc_figures()
        if figures is not None:
            yield GaugeMetricFamily("govshare_malloc_in_use_bytes", "Memory malloc has handed out and not had back",
                                    value=figures.in_use)
            yield GaugeMetricFamily("govshare_malloc_free_bytes", "Memory malloc holds free for reuse (in its arenas)",
                                    value=figures.free)
            yield GaugeMetricFamily("govshare_malloc_arenas", "Arenas malloc has made", value=figures.arenas)
        yield GaugeMetricFamily("govshare_python_allocated_blocks", "Blocks Python's allocator has handed out",
                                value=sys.getallocatedblocks())
        yield GaugeMetricFamily("govshare_keyed_store_memory_bytes", "Memory DuckDB holds for the open keyed stores",
                                value=self.keyed_store_memory())
