"""Reading a text file bounded: as far as no line is longer than a limit, or as far as a table goes.

A parser (pandas) holds a whole line in memory, whatever its length; a file of one 400 MB line, or
of a million fields on one line, would cost gigabytes. Wrapped in LineLimit the file ends before
the first line longer than the limit, so the parser sees only whole lines of bounded length.
Wrapped in BlockEnd it ends before the first blank line after a table's first row: a plate
reader writes one table per read, and the next one (or the trailer after the last) must not be
read as rows of the first, even where the sample does not reach that far.

Both hold at most one read (READ_BYTES) and a bounded carry-over in memory.
"""

from __future__ import annotations

import io
import re
from typing import Any, BinaryIO

#: Bytes read at a time: at most the limit, so that a line wholly inside one read is short enough.
READ_BYTES = 256 << 10
#: A blank line, with the line break before it: nothing but blanks and delimiters (``,,,,``).
BLANK_LINE = re.compile(rb"\n[ \t,;|]*\r?\n")


class _Filtered(io.RawIOBase):
    """A raw stream passing on what ``_fill`` makes ready, a read at a time, until it is done."""

    _ready: memoryview
    _done: bool

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
        raise NotImplementedError


class LineLimit(_Filtered):
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


class BlockEnd(_Filtered):
    """A file's bytes up to the first blank line at or after byte ``after`` (a line of nothing but
    blanks and delimiters, ``,,,,``, is blank too). ``ended`` says whether it stopped there."""

    #: The longest line end kept back to look for a blank line across two reads: a longer one
    #: is not blank, or not one a table ends with.
    _CARRY = 64 << 10

    def __init__(self, raw: BinaryIO, after: int) -> None:
        self._raw = raw
        self._after = after
        self._read = 0  # bytes read from ``raw``
        self._carry = b""  # the last line of the previous read: a blank line may start there
        self._ready = memoryview(b"")
        self._done = False
        self.ended = False

    def _fill(self) -> None:
        data = self._raw.read(READ_BYTES)
        if not data:
            self._ready, self._carry, self._done = memoryview(self._carry), b"", True
            return
        buffer = self._carry + data
        base = self._read - len(self._carry)  # the file offset of buffer[0]
        self._read += len(data)
        # The line break that ends the line before ``after`` opens a blank line starting there.
        blank = BLANK_LINE.search(buffer, max(0, self._after - 1 - base))
        if blank is not None:
            self._ready, self._done, self.ended = memoryview(buffer[: blank.start() + 1]), True, True
            return
        cut = buffer.rfind(b"\n")
        if cut < 0 or len(buffer) - cut > self._CARRY:
            cut = len(buffer)
        self._ready, self._carry = memoryview(buffer[:cut]), buffer[cut:]
