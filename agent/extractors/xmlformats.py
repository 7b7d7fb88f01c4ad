"""XML instrument formats (PANalytical ``.xrdml``, mzML and others): header only, safely.

defusedxml refuses DTDs' entity tricks (billion laughs, external entities: nothing is fetched) and
the parse is streamed (iterparse), stopping after the header-sized first part of the document, so
a multi-megabyte list of counts is never read.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from .base import Budget, ExtractionError, Metadata, Source

MAX_ELEMENTS = 5_000
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


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


class XmlExtractor:
    name = "xml"

    def accepts(self, name: str, head: bytes) -> bool:
        return PurePosixPath(name).suffix.lower() in _SUFFIXES or head.lstrip(
            b"\xef\xbb\xbf \t\r\n"
        ).startswith(b"<?xml")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        result: dict[str, Any] = {}
        found: dict[str, list[str]] = {}
        seen = 0
        try:
            for event, element in iterparse(str(source.path), events=("start", "end"), forbid_dtd=True):
                budget.check()
                namespace, local = _local(element.tag)
                if event == "start":
                    if "root" not in result:
                        result["root"] = local
                        if namespace:
                            result["namespace"] = namespace
                        result["rootAttributes"] = {
                            _local(k)[1]: v for k, v in element.attrib.items() if len(v) < 200
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
        except DefusedXmlException as exc:
            raise ExtractionError(
                f"{source.name!r} uses XML features refused for safety: {type(exc).__name__}"
            ) from None
        except Exception as exc:  # ParseError and friends from expat
            if "root" not in result:
                raise ExtractionError(f"{source.name!r} is not well-formed XML: {exc}") from None
            result["truncated"] = f"the document breaks off: {exc}"
        for key, values in found.items():
            result[key] = values[0] if len(values) == 1 else values
        return result
