"""PANalytical XRDML (``.xrdml``, any case): what was measured, how and when; never the counts.

A header (sample, wavelength, X-ray tube, detector), then scans, each with a header (times, author,
software) and data points: positions, counting time, and the counts that are nearly all the file.
Read as xmlformats reads XML (defusedxml, no DTD, at most MAX_BYTES, the budget checked at every
read); each element is dropped once read and unhooked from its parent, so memory follows the
document's depth and largest text, not its length. The counts are counted, never kept.

The generic XML reader's keys (root, namespace, rootAttributes, start, end, source, detector,
truncated) keep their meaning, so rules written for it keep working; start is the first scan's,
end the last scan's.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .base import (
    Budget,
    ExtractionError,
    Metadata,
    Source,
    acquisition_time,
    iso_seconds,
    suffix,
)
from .xmlformats import MAX_BYTES, Bounded, list_events, local_name, unreadable

ROOT = "xrdMeasurements"
#: Scans and comment lines described (all scans are read and counted).
MAX_LISTED = 20
#: A header value longer than this is not a header value (and is left out).
MAX_TEXT = 500
_VERSION = re.compile(r"/XRDMeasurement/(\d+(?:\.\d+)*)$")
_TOKEN = re.compile(r"\S+")
# Header values read, by their parent; the quantities among them keep their unit.
_HEADER_FIELDS = {
    "usedWavelength": ("kAlpha1", "kAlpha2", "kBeta", "ratioKAlpha2KAlpha1"),
    "xRayTube": ("tension", "current", "anodeMaterial"),
    "sample": ("id", "name"),
}
_QUANTITIES = {"kAlpha1", "kAlpha2", "kBeta", "tension", "current"}
_HEADER_ATTRIBUTES = {"sample": ("type",), "usedWavelength": ("intended",), "xRayTube": ("id", "name")}
# The positions a scan axis moves first, and how people write axes.
_MAIN_AXIS = {"Gonio": "2Theta", "2Theta-Omega": "2Theta", "Omega-2Theta": "Omega"}
_SYMBOLS = {"Gonio": "2θ/ω", "2Theta-Omega": "2θ/ω", "Omega-2Theta": "ω/2θ", "2Theta": "2θ", "Omega": "ω"}
_UNITS = {"deg": "°", "Angstrom": " Å", "seconds": " s", "s": " s"}
_EN_DASH, _K_ALPHA1 = "–", "Kα1"  # noqa: RUF001 (typography for people, in the description)


def _text(element: Any) -> str | None:
    text = (element.text or "").strip()
    return text if text and len(text) <= MAX_TEXT else None


def _number(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _quantity(element: Any) -> dict[str, Any] | None:
    text = _text(element)
    return None if text is None else {"value": _number(text), **_pick(element.attrib, "unit")}


def _pick(attributes: Any, *names: str) -> dict[str, str]:
    values = {name: str(attributes.get(name) or "").strip() for name in names}
    return {k: v for k, v in values.items() if v and len(v) <= MAX_TEXT}


def _unit(unit: str) -> str:
    return _UNITS.get(unit, f" {unit}" if unit else "")


class _Reading:
    """What the document said so far, fed its elements in document order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.out: dict[str, Any] = {}
        self.scans: list[dict[str, Any]] = []
        self.scan_count = 0
        self.warnings: list[str] = []
        self.scan: dict[str, Any] = {}  # being read (one past MAX_LISTED is read, not kept)
        self.axis: dict[str, Any] = {}
        self.header_done = False  # only the first xrdMeasurement's header is described

    def opened(self, path: list[str], element: Any) -> None:
        name, attributes = path[-1], element.attrib
        if len(path) == 1:
            self._root(name, element)
        elif name == "scan":
            self.scan_count += 1
            self.scan = _pick(attributes, "scanAxis", "mode", "status", "appendNumber")
            if len(self.scans) < MAX_LISTED:
                self.scans.append(self.scan)
        elif name == "positions" and "scan" in path:
            self.axis = _pick(attributes, "unit")
            axis = _pick(attributes, "axis").get("axis", "?")
            self.scan.setdefault("positions", {}).setdefault(axis, self.axis)
        elif self.header_done or "scan" in path:
            return
        elif name == "xrdMeasurement":
            self.out["measurement"] = _pick(attributes, "measurementType", "status", "sampleMode")
        elif name in _HEADER_ATTRIBUTES and name not in self.out:
            self.out[name] = _pick(attributes, *_HEADER_ATTRIBUTES[name])
            if name == "xRayTube" and "name" in self.out[name]:
                self.out["source"] = self.out[name]["name"]  # the generic reader's key for the tube
        elif name == "detector" and "detector" not in self.out and _pick(attributes, "name"):
            self.out["detector"] = _pick(attributes, "name")["name"]

    def _root(self, name: str, element: Any) -> None:
        if name != ROOT:
            raise ExtractionError(f"{self.name!r} is not XRDML: its root element is <{name}>, not <{ROOT}>")
        namespace, _ = local_name(element.tag)
        self.out["root"] = name
        if namespace:
            self.out["namespace"] = namespace
            version = _VERSION.search(namespace)
            if version:
                self.out["xrdmlVersion"] = version.group(1)
        self.out["rootAttributes"] = {local_name(k)[1]: v for k, v in element.attrib.items() if len(v) < 200}

    def closed(self, path: list[str], element: Any) -> None:
        name, parent = path[-1], path[-2] if len(path) > 1 else ""
        if name == "scan":
            self._check_status(f"scan {self.scan_count}", self.scan)
        elif "scan" in path:
            self._scan_part(name, parent, element)
        elif name == "xrdMeasurement":
            self.header_done = True
        elif not self.header_done:
            self._header_part(path, name, parent, element)

    def _header_part(self, path: list[str], name: str, parent: str, element: Any) -> None:
        text = _text(element)
        if text is None:
            return
        if name in _HEADER_FIELDS.get(parent, ()):
            value = _quantity(element) if name in _QUANTITIES else text
            self.out.setdefault(parent, {})[name] = _number(text) if name.startswith("ratio") else value
        elif path[-3:] == [ROOT, "comment", "entry"] and len(self.out.get("comment", [])) < MAX_LISTED:
            self.out.setdefault("comment", []).append(text)

    def _scan_part(self, name: str, parent: str, element: Any) -> None:
        scan, text = self.scan, _text(element)
        if parent == "dataPoints" and name in ("intensities", "counts"):
            # The parser holds this text anyway: counting its values costs one pass, keeping none.
            scan["points"] = sum(1 for _ in _TOKEN.finditer(element.text or ""))
        elif parent == "positions" and name == "listPositions":
            self.axis["listPositions"] = True
        elif text is None:
            return
        elif parent == "dataPoints" and name == "commonCountingTime":
            scan["countingTime"] = _quantity(element)
        elif parent == "positions" and name in ("startPosition", "endPosition", "commonPosition"):
            self.axis[name.removesuffix("Position")] = _number(text)
        elif parent == "header" and name == "startTimeStamp":
            scan["start"] = text
            self.out.setdefault("start", text)  # the first scan's, even if the file breaks off after it
        elif parent == "header" and name == "endTimeStamp":
            scan["end"] = self.out["end"] = text
        elif parent == "author" and name == "name":
            scan["author"] = text
        elif parent == "source" and name in ("applicationSoftware", "instrumentControlSoftware"):
            scan[name] = {"name": text, **_pick(element.attrib, "version")}
        elif parent == "source" and name == "instrumentID":
            scan[name] = text

    def _check_status(self, what: str, attributes: dict[str, str]) -> None:
        status = attributes.get("status", "Completed")
        if status != "Completed" and len(self.warnings) < MAX_LISTED:
            self.warnings.append(f"{what} has the status {status!r}, not 'Completed'")

    def result(self) -> Metadata:
        self._check_status("the measurement", self.out.get("measurement", {}))
        if self.scan_count == 0:
            self.warnings.append("the file holds no scan")
        self._acquisition()
        out = {**self.out, "scans": self.scans, "scanCount": self.scan_count}
        out["instrument"] = _instrument(out.get("comment", []), self.scans[0] if self.scans else {})
        out["description"] = _description(out, self.scans, self.scan_count)
        return {**out, "warnings": self.warnings} if self.warnings else out

    def _acquisition(self) -> None:
        start, end = self.out.get("start"), self.out.get("end")
        first, last = iso_seconds(start), iso_seconds(end)
        if first is None or (end and last is None):
            if start:
                self.warnings.append(f"the scan times ({start!r}, {end!r}) are not ISO 8601 date and time")
            return
        self.out["acquisition"] = acquisition_time(first, last, source="scan/header/startTimeStamp")


def _instrument(comments: list[str], scan: dict[str, Any]) -> dict[str, str]:
    """The instrument as the file names it: its comment's system, the first scan's ID and software."""
    # Data Collector writes the diffractometer's model as a comment line of its own.
    system = [c.partition("=")[2].strip() for c in comments if c.startswith("Diffractometer system=")]
    found = {"model": system[0]} if system and system[0] else {}
    if scan.get("instrumentID"):
        found["serialNumber"] = scan["instrumentID"]
    software = scan.get("applicationSoftware")
    if software:
        found["software"] = " ".join(filter(None, (software["name"], software.get("version"))))
    return found


def _description(out: dict[str, Any], scans: list[dict[str, Any]], count: int) -> str:
    if not scans:
        return "PANalytical XRDML measurement with no scan"
    first, anode = scans[0], out.get("xRayTube", {}).get("anodeMaterial", "")
    axis = first.get("scanAxis", "")
    kind = f"{_SYMBOLS[axis]} scan ({axis})" if axis in _SYMBOLS else f"{axis} scan".strip()
    at_least = "at least " if "truncated" in out else ""  # the scans past the break are not counted
    several = f", {at_least}{count} scans, the first a" if count > 1 else ""
    parts = [
        f"PANalytical XRDML{several} {kind}",
        _span(first),
        f"{first['points']:,} points" if first.get("points") else None,
        _amount(out.get("usedWavelength", {}).get("kAlpha1"), f"{anode} {_K_ALPHA1} {{:.4f}}".lstrip()),
        _amount(first.get("countingTime"), "{:g}", " per step"),
    ]
    return ", ".join(filter(None, parts))


def _span(scan: dict[str, Any]) -> str | None:
    """The range the scan covers on the axis it moves (2θ for a coupled 2θ/ω scan)."""
    positions = scan.get("positions", {})
    axis = _MAIN_AXIS.get(scan.get("scanAxis", ""), scan.get("scanAxis", ""))
    axis = axis if axis in positions else "2Theta"
    start, end = positions.get(axis, {}).get("start"), positions.get(axis, {}).get("end")
    if not (isinstance(start, float) and isinstance(end, float)):
        return None
    return (
        f"{start:.2f}{_EN_DASH}{end:.2f}{_unit(positions[axis].get('unit', ''))} {_SYMBOLS.get(axis, axis)}"
    )


def _amount(quantity: dict[str, Any] | None, template: str, after: str = "") -> str | None:
    value = (quantity or {}).get("value")
    if not isinstance(value, float) or quantity is None:
        return None
    return template.format(value) + _unit(quantity.get("unit", "")) + after


class XrdmlExtractor:
    name = "xrdml"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        return suffix(name) == ".xrdml"

    def extract(self, source: Source, budget: Budget) -> Metadata:
        reading = _Reading(source.name)
        with source.path.open("rb") as raw:
            stream = Bounded(raw, MAX_BYTES, budget)
            try:
                _read(stream, reading, budget)
            except ExtractionError:
                raise  # the time budget ran out, or this is not XRDML: not a truncated document
            except Exception as exc:  # refused for safety, or ParseError and friends from expat
                if (error := unreadable(source.name, exc, began="root" in reading.out)) is not None:
                    raise error from None
                capped = f"only its first {MAX_BYTES >> 20} MiB were read: what follows is not described"
                reading.out["truncated"] = capped if stream.at_limit else f"the document breaks off: {exc}"
                reading.warnings.append(reading.out["truncated"])
        return reading.result()


def _read(stream: Bounded, reading: _Reading, budget: Budget) -> None:
    path: list[str] = []
    open_elements: list[Any] = []
    for event, element in list_events(stream):
        budget.check()
        if event == "start":
            path.append(local_name(element.tag)[1])
            open_elements.append(element)
            reading.opened(path, element)
            continue
        reading.closed(path, element)
        path.pop()
        open_elements.pop()
        # Streaming: nothing read stays, not even an empty element in its parent's list.
        element.clear()
        if open_elements:
            open_elements[-1].remove(element)
