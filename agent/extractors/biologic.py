"""BioLogic EC-Lab settings files (.mps): the experiment as it was set up on the potentiostat.

An .mps is text, written in the Windows code page (µ and ² as single bytes) with CRLF: the line
``EC-LAB SETTING FILE``, the number of linked techniques, in newer versions the EC-Lab and firmware
versions, the original path, the device and the cell's characteristics (``Mass of active material
: 7000.000 mg``), then one block per technique: ``Technique : 1``, its name (``Galvanostatic
Cycling with Potential Limitation``) and its parameters, one line each, one 20-character column
per sequence (``Ns 0 1 2 3``). The binary results (.mpr) are left to the generic description.

Invariants: at most MAX_BYTES are read; techniques, parameters and sequences are capped (the
output says so); values are kept as written, their units being in the parameter's name or on a
``unit ...`` line; EC-Lab writes dates month-first (MM/DD/YYYY) and they are read so.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .base import Budget, ExtractionError, Metadata, Source, acquisition_time, suffix
from .tabular import detect_encoding

MAX_BYTES = 1 << 20
MAX_TECHNIQUES = 64
MAX_PARAMETERS = 200
MAX_SEQUENCES = 100
MAX_VALUE = 2000
#: The width of a technique's parameter columns: the name, then one column per sequence.
COLUMN = 20
MAGIC = "EC-LAB SETTING FILE"

#: Technique names as EC-Lab writes them, and their abbreviations.
TECHNIQUES = {
    "Open Circuit Voltage": "OCV",
    "Cyclic Voltammetry": "CV",
    "Cyclic Voltammetry Advanced": "CVA",
    "Chronoamperometry / Chronocoulometry": "CA",
    "Chronopotentiometry": "CP",
    "Linear Sweep Voltammetry": "LSV",
    "Potentio Electrochemical Impedance Spectroscopy": "PEIS",
    "Galvano Electrochemical Impedance Spectroscopy": "GEIS",
    "Staircase Potentio Electrochemical Impedance Spectroscopy": "SPEIS",
    "Staircase Galvano Electrochemical Impedance Spectroscopy": "SGEIS",
    "Galvanostatic Cycling with Potential Limitation": "GCPL",
    "Potentiodynamic Cycling with Galvanostatic Acceleration": "PCGA",
    "Modulo Bat": "MB",
}
#: Lines about the cell (its electrode, electrolyte, mass, area), as opposed to the device's setup.
CELL_KEYS = frozenset(
    {
        "electrode material",
        "initial state",
        "electrolyte",
        "comments",
        "mass of active material",
        "molecular weight of active material (at x = 0)",
        "atomic weight of intercalated ion",
        "acquisition started at",
        "number of e- transfered per intercalated ion",
        "number of e- transferred per intercalated ion",
        "battery capacity",
        "electrode surface area",
        "characteristic mass",
        "equivalent weight",
        "density",
        "volume (v)",
        "reference electrode",
    }
)
_PAIR = re.compile(r"^(?P<key>\S.*?)\s:(?:\s(?P<value>.*))?$")
_TECHNIQUE = re.compile(r"^Technique\s*:\s*(?P<number>\d+)\s*$", re.IGNORECASE)
_VERSION = re.compile(r"^(?P<what>.+?)\s+v(?P<version>\d+(?:\.\d+)+\w*)\s*\((?P<kind>software|firmware)\)")
_DEVICE = re.compile(r"^(?P<model>.+?)(?:\s*\(?\s*(?:SN|S/N)\s*:?\s*(?P<serial>[^)\s]+)\)?)?$")
_CHANNEL = re.compile(r"^(?:run on )?channel$", re.IGNORECASE)
_STARTED = re.compile(r"^acquisition started on$", re.IGNORECASE)
_DATE_FORMATS = ("%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M")


class BiologicExtractor:
    """EC-Lab settings (.mps): device, techniques and their parameters, the cell."""

    name = "biologic"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        if suffix(name) != ".mps":
            return False
        return head.removeprefix(b"\xef\xbb\xbf").lstrip().upper().startswith(MAGIC.encode())

    def extract(self, source: Source, budget: Budget) -> Metadata:
        with source.path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
        truncated = len(data) > MAX_BYTES
        encoding = detect_encoding(data[:MAX_BYTES])
        lines = data[:MAX_BYTES].decode(encoding, errors="replace").splitlines()
        if truncated and lines:
            lines.pop()  # cut by the read
        if not lines or lines[0].strip().upper() != MAGIC:
            raise ExtractionError(
                f"{source.name!r} does not start with {MAGIC!r}: not an EC-Lab settings file"
            )
        settings = _Settings()
        for number, line in enumerate(lines[1:], start=1):
            if number % 1000 == 0:
                budget.check()
            settings.read(line)
        result = settings.metadata()
        result["encoding"] = encoding
        if truncated:
            result["truncated"] = {"readBytes": MAX_BYTES}
        return result


class _Settings:
    """The file read line by line: the preamble, then the techniques."""

    def __init__(self) -> None:
        self.linked: int | None = None
        self.versions: dict[str, str] = {}
        self.setup: dict[str, str] = {}
        self.cell: dict[str, str] = {}
        self.notes: list[str] = []
        self.techniques: list[dict[str, Any]] = []
        self._last: dict[str, str] | None = None  # the dict of the previous key, for its continuation
        self._last_key = ""
        self._capped: set[str] = set()

    def read(self, line: str) -> None:
        if not line.strip():
            return
        technique = _TECHNIQUE.match(line.strip())
        if technique:
            if len(self.techniques) < MAX_TECHNIQUES:
                self.techniques.append({"number": int(technique["number"]), "parameters": {}})
            else:
                self._capped.add("techniques")
            return
        if self.techniques:
            self._technique_line(self.techniques[-1], line)
        else:
            self._preamble_line(line)

    def _preamble_line(self, line: str) -> None:
        if line[:1].isspace() and self._last is not None:
            # " at x = 1.000" under the mass, "\tDo not start on E overload" under "Safety Limits".
            before = self._last[self._last_key]
            if len(before) < MAX_VALUE:  # a value never grows past this, however many lines follow
                self._last[self._last_key] = f"{before}; {line.strip()}" if before else line.strip()
            return
        if len(self.setup) + len(self.cell) + len(self.versions) + len(self.notes) >= MAX_PARAMETERS:
            self._capped.add("settings")
            return
        version = _VERSION.match(line.strip())
        pair = _PAIR.match(line.strip())
        if version:
            self.versions[version["what"]] = version["version"]
        elif pair:
            key, value = pair["key"].strip(), (pair["value"] or "").strip()
            if key.lower() == "number of linked techniques" and value.isdigit():
                self.linked = int(value)
            target = self.cell if key.lower() in CELL_KEYS else self.setup
            target.setdefault(key, value)
            self._last, self._last_key = target, key
        else:
            self.notes.append(line.strip())  # "Record Power", "Turn to OCV between techniques"

    def _technique_line(self, technique: dict[str, Any], line: str) -> None:
        if "name" not in technique:
            technique["name"] = line.strip()
            abbreviation = _abbreviation(technique["name"])
            if abbreviation:
                technique["abbreviation"] = abbreviation
            return
        name, values = _parameter(line)
        parameters: dict[str, list[str]] = technique["parameters"]
        if not name or name in parameters:
            return
        if len(parameters) >= MAX_PARAMETERS:
            self._capped.add("parameters")
            return
        if len(values) > MAX_SEQUENCES:
            self._capped.add("sequences")
        parameters[name] = values[:MAX_SEQUENCES]
        if name == "Ns":
            technique["sequences"] = len(values)

    def metadata(self) -> Metadata:
        out: Metadata = {}
        if self.linked is not None:
            out["linkedTechniques"] = self.linked
        if self.versions:
            out["versions"] = self.versions
        out.update(_setup_fields(self.setup))
        for key, value in (("setup", self.setup), ("cell", _filled(self.cell)), ("notes", self.notes)):
            if value:
                out[key] = value
        order = ("number", "name", "abbreviation", "sequences", "parameters")
        out["techniques"] = [{k: t[k] for k in order if k in t} for t in self.techniques]
        instrument = _instrument(out, self.versions)
        if instrument:
            out["instrument"] = instrument
        out["description"] = _description(out)
        warnings = self._warnings()
        if warnings:
            out["warnings"] = warnings
        return out

    def _warnings(self) -> list[str]:
        warnings = []
        if self.linked is not None and self.linked != len(self.techniques) and not self._capped:
            warnings.append(
                f"the file says {self.linked} linked technique(s) but holds {len(self.techniques)}"
            )
        if self._capped:
            limits = (
                f"{MAX_TECHNIQUES} techniques, {MAX_PARAMETERS} settings or parameters of each, "
                f"{MAX_SEQUENCES} sequences"
            )
            warnings.append(f"only the first {limits} are kept ({', '.join(sorted(self._capped))} cut)")
        return warnings


def _abbreviation(name: str) -> str | None:
    if name in TECHNIQUES:
        return TECHNIQUES[name]
    base, _, number = name.rpartition(" ")  # "Galvanostatic Cycling with Potential Limitation 2"
    return TECHNIQUES[base] + number if base in TECHNIQUES and number.isdigit() else None


def _parameter(line: str) -> tuple[str, list[str]]:
    """A parameter line: its name, then one value per sequence, in 20-character columns (split
    on runs of blanks where a line does not keep to them)."""
    text = line.rstrip()
    if len(text) > COLUMN and text[COLUMN - 1] == " ":
        cells = [text[i : i + COLUMN].strip() for i in range(COLUMN, len(text), COLUMN)]
        return text[:COLUMN].strip(), cells
    parts = re.split(r"\s{2,}", text.strip())
    return parts[0], parts[1:]


def _filled(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _setup_fields(setup: dict[str, str]) -> Metadata:
    # The lines every rule wants at the top: device, channel, original path, start of acquisition.
    out: Metadata = {}
    lowered = {k.lower(): (k, v) for k, v in setup.items()}
    if "device" in lowered:
        out["device"] = lowered["device"][1]
    channel = next((v for k, (_, v) in lowered.items() if _CHANNEL.match(k) and v), None)
    if channel:
        out["channel"] = channel.split()[0]
    if "filename" in lowered:
        out["originalPath"] = lowered["filename"][1]
    started = next((v for k, (_, v) in lowered.items() if _STARTED.match(k)), None)
    moment = _ec_lab_date(started) if started else None
    if moment is not None:
        out["acquisition"] = acquisition_time(moment, source='setting "Acquisition started on" (MM/DD/YYYY)')
    return out


def _ec_lab_date(text: str) -> datetime | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(microsecond=0)
        except ValueError:
            continue
    return None


def _instrument(meta: Metadata, versions: dict[str, str]) -> Metadata:
    device = _DEVICE.match(str(meta.get("device", "")).strip())
    if device is None or not device["model"]:
        return {}
    out: Metadata = {"name": device["model"], "model": device["model"], "manufacturer": "BioLogic"}
    if device["serial"]:
        out["serialNumber"] = device["serial"]
    software = next((v for k, v in versions.items() if k.upper().startswith("EC-LAB")), None)
    if software:
        out["software"] = f"EC-Lab {software}"
    return out


def _description(meta: Metadata) -> str:
    names = [t.get("abbreviation") or t.get("name", "?") for t in meta["techniques"]]
    what = ", ".join(dict.fromkeys(names)) if names else "no technique"
    device = meta.get("instrument", {}).get("model")
    where = ""
    if device and meta.get("channel"):
        where = f" on channel {meta['channel']} of the {device}"
    elif device:
        where = f" on the {device}"
    return f"BioLogic EC-Lab settings: {what}{where}"
