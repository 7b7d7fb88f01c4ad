"""Buffers that files are read into, placed where the kernel's copy into them is fast.

A read copies from the page cache into the caller's buffer with ``rep movsb`` on current x86, and
where the buffer starts decides that copy's speed. Two placements are slow:

- 8 or 16 bytes past a 32-byte boundary, where malloc puts a bytearray of a megabyte (in a fresh
  mapping, just after its 16-byte chunk header). On this project's 2-core AMD EPYC test machine
  a 1 GiB file in tmpfs was read at 1.9 GiB/s into such a buffer and at 5.7-6.7 GiB/s into one on
  a cache line; read and hashed, 690-800 against 1,100 MiB/s a core. AMD's Zen 3 is reported
  to be up to 20 times slower at such copies.
- at the same offset within its page as the source (glibc bug 30994, "page aliasing" on Zen 4):
  the page cache's pages start on a page boundary, so a page-aligned buffer is the slow case
  there, though not on the test machine.

So the buffer starts on a cache line, a kilobyte past a page boundary (any 64-byte-aligned start
was as fast as a page-aligned one here), in an anonymous mapping, whatever the allocator does.
"""

from __future__ import annotations

import mmap

#: Where a buffer starts within its page: on a cache line, away from the page's start.
PAGE_OFFSET = 1024


def read_buffer(size: int) -> memoryview:
    """A writable, zero-filled buffer of ``size`` bytes (at least 1) for os.preadv or readinto,
    starting PAGE_OFFSET bytes into a page."""
    mapping = mmap.mmap(-1, PAGE_OFFSET + size)
    return memoryview(mapping)[PAGE_OFFSET:]
