"""XML instrument formats (PANalytical ``.xrdml``, mzML and others): header only, safely.

This is the generic reader: a few well-known element names, whatever the format. A format with an
extractor of its own (xrdml.py, for one) reads its documents through the same safe stream (``Bounded``,
``list_events``); this one remains for rules that ask for the "xml" extractor by name.

defusedxml refuses DTDs' entity tricks (billion laughs, external entities: nothing is fetched) and
the parse is streamed (iterparse), stopping after the header-sized first part of the document, so
a multi-megabyte list of counts is never read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from .base import Budget, ExtractionError, Metadata, Source, UnsafeInputError, acquisition_time, suffix

MAX_ELEMENTS = 5_000
#: The header of an instrument file is in its first kilobytes; nothing past this is parsed (a
#: 300 MB attribute or text node would otherwise be held whole, and parsed in quadratic time).
MAX_BYTES = 4 << 20
_SUFFIXES = {".xml", ".xrdml", ".mzml"}
# Local element names whose text (or "name" attribute) says what a measurement was.
_WANTED = {
    "startTimeStamp": "start",
    "endTimeStamp": "end",
    "xRayTube": "source",
    "detector": "detector",
    "instrumentConfiguration": "instrument",
    "softwareRef": "software",
    "software": "software",
    "sample": "sample",
    "run": "run",
}


class Bounded(io.RawIOBase):
    """A file that ends after ``limit`` bytes, checking the time budget at every read."""

    def __init__(self, raw: BinaryIO, limit: int, budget: Budget) -> None:
        self._raw, self._left, self._budget = raw, limit, budget

    def readable(self) -> bool:
        return True

    @property
    def at_limit(self) -> bool:
        """Whether all ``limit`` bytes were read: the file may go on past them."""
        return self._left <= 0

    def readinto(self, buffer: Any) -> int:
        self._budget.check()
        if self._left <= 0:
            return 0
        data = self._raw.read(min(len(buffer), self._left, 64 << 10))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def list_events(stream: io.RawIOBase) -> Iterator[tuple[str, Any]]:
    # forbid_dtd: no DTD at all, so no entity can be declared, let alone expanded or fetched.
    return iterparse(io.BufferedReader(stream), events=("start", "end"), forbid_dtd=True)  # type: ignore[no-any-return]


def unreadable(name: str, error: Exception, *, began: bool) -> ExtractionError | None:
    """What a parser's error means for the file: XML refused for safety (a DTD, entities), or not
    XML at all when no root element was read; None when the document broke off after its start
    (the caller says it is truncated)."""
    if isinstance(error, DefusedXmlException):
        return UnsafeInputError(f"{name!r} uses XML features refused for safety: {type(error).__name__}")
    if not began:
        return ExtractionError(f"{name!r} is not well-formed XML: {error}")
    return None


def local_name(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


class XmlExtractor:
    name = "xml"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        return suffix(name) in _SUFFIXES or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<?xml")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        result: dict[str, Any] = {}
        found: dict[str, list[str]] = {}
        seen = 0
        try:
            with source.path.open("rb") as raw:
                for event, element in list_events(Bounded(raw, MAX_BYTES, budget)):
                    budget.check()
                    namespace, local = local_name(element.tag)
                    if event == "start":
                        if "root" not in result:
                            result["root"] = local
                            if namespace:
                                result["namespace"] = namespace
                            result["rootAttributes"] = {
                                local_name(k)[1]: v for k, v in element.attrib.items() if len(v) < 200
                            }
                        seen += 1
                        if seen > MAX_ELEMENTS:
                            break
                        continue
                    key = _WANTED.get(local)
                    if key is not None and len(found.get(key, [])) < 20:
                        value = (element.text or "").strip() or element.get("name") or element.get("id") or ""
                        if value and len(value) < 500:
                            found.setdefault(key, []).append(value)
                    element.clear()  # streaming: keep nothing of what was read
        except ExtractionError:
            raise  # the time budget ran out: not a truncated document
        except Exception as exc:  # refused for safety, or ParseError and friends from expat
            if (error := unreadable(source.name, exc, began="root" in result)) is not None:
                raise error from None
            result["truncated"] = f"the document breaks off: {exc}"
        for key, values in found.items():
            result[key] = values[0] if len(values) == 1 else values
        starts, ends = found.get("start", []), found.get("end", [])
        if starts and _is_time(starts[0]):
            end = ends[-1] if ends and _is_time(ends[-1]) else None
            result["acquisition"] = acquisition_time(starts[0], end, source="startTimeStamp")
        return result


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
