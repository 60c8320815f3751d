"""The server's memory figures: what malloc holds in use and free, and how serve sets malloc up (arenas, large blocks)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

from govshare import memory

MB = 2**20


def test_malloc_figures_follow_memory_handed_out_and_given_back():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    before = memory.malloc_figures()
    # 40,000 blocks of 1 KB (from the arenas) and one of 32 MB (mapped directly).
    small = [libc.malloc(1024) for _ in range(40_000)]
    large = libc.malloc(32 * MB)
    during = memory.malloc_figures()
    for block in small:
        libc.free(block)
    libc.free(large)
    after = memory.malloc_figures()

    assert during.in_use - before.in_use >= 40_000 * 1024 + 32 * MB
    assert during.mapped - before.mapped >= 32 * MB
    assert during.in_use - after.in_use >= 40_000 * 1024 + 32 * MB
    assert after.free >= 30 * MB or after.free > before.free  # the small blocks' memory is kept for reuse (or trimmed)


def test_configured_malloc_keeps_threads_to_two_arenas():
    # In a fresh process (the limit must come before the threads): 8 threads allocating at once
    # would be given arenas of their own (9 here without the limit); with it they share two.
    program = textwrap.dedent("""
        import ctypes, threading
        from govshare import memory
        memory.configure_malloc()
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        start = threading.Barrier(8)
        def churn():
            start.wait()
            for _ in range(20_000):
                libc.free(libc.malloc(256))
        threads = [threading.Thread(target=churn) for _ in range(8)]
        for thread in threads: thread.start()
        for thread in threads: thread.join()
        print(memory.malloc_figures().arenas)
    """)
    environment = {"PATH": "/usr/bin:/bin"}  # no MALLOC_ARENA_MAX: the limit is the function's
    arenas = int(subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, env=environment).stdout)
    assert 1 <= arenas <= memory.MALLOC_ARENAS


def test_configured_malloc_keeps_giving_large_blocks_back_after_a_larger_one_was_freed():
    # glibc raises its threshold for mapping a block on its own to the size of each mapped
    # block freed: after a 4 MB block, a 256 KB one would come from the heap and stay there
    # once freed (0 bytes mapped here without configure_malloc). Configured, it is still mapped.
    program = textwrap.dedent("""
        import ctypes, sys
        from govshare import memory
        if sys.argv[1] == "configured":
            memory.configure_malloc()
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        libc.free(libc.malloc(4 * 2**20))
        before = memory.malloc_figures().mapped
        block = libc.malloc(256 * 1024)
        print(memory.malloc_figures().mapped - before)
        libc.free(block)
    """)
    environment = {"PATH": "/usr/bin:/bin"}  # no MALLOC_MMAP_THRESHOLD_: the setting is the function's
    mapped = {how: int(subprocess.run([sys.executable, "-c", program, how], capture_output=True, text=True, check=True,
                                      env=environment).stdout) for how in ("configured", "default")}
    assert mapped["configured"] >= 256 * 1024
    assert mapped["default"] == 0  # the behaviour configured away (glibc's own)
