"""Reading a text file line-bounded: the bytes as far as no line is longer than a limit.

A parser (pandas) holds a whole line in memory, whatever its length; a file of one 400 MB line, or
of a million fields on one line, would cost gigabytes. Wrapped in LineLimit the file ends before
the first line longer than the limit, so the parser sees only whole lines of bounded length.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

#: Bytes read at a time: at most the limit, so that a line wholly inside one read is short enough.
READ_BYTES = 256 << 10


class LineLimit(io.RawIOBase):
    """A file's bytes as far as its lines are at most ``limit`` bytes: it ends before the first
    longer one (``cut_at`` is its number). Only whole lines are passed on."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._pending = b""  # the start of a line that the next read continues
        self._ready = memoryview(b"")
        self._lines = 0
        self._done = False
        self.cut_at: int | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._ready and not self._done:
            self._fill()
        size = min(len(buffer), len(self._ready))
        buffer[:size] = self._ready[:size]
        self._ready = self._ready[size:]
        return size

    def _fill(self) -> None:
        data = self._raw.read(READ_BYTES)
        if not data:  # the end of the file: what is pending is its last line
            self._ready, self._pending, self._done = memoryview(self._pending), b"", True
            return
        first = data.find(b"\n")
        if first < 0 and len(self._pending) + len(data) <= self._limit:
            self._pending += data
            return
        if first < 0 or len(self._pending) + first > self._limit:
            self.cut_at, self._pending, self._done = self._lines + 1, b"", True
            return
        last = data.rfind(b"\n")
        # Lines wholly inside ``data`` are shorter than a read, so at most the limit.
        self._ready = memoryview(self._pending + data[: last + 1])
        self._lines += data.count(b"\n", 0, last + 1)
        self._pending = data[last + 1 :]
