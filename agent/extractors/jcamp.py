"""JCAMP-DX spectra (``.jdx``, ``.dx``, ``.jcamp``, any case): the ``##KEY=value`` header.

Only the header is read, up to the first data table (``##XYDATA``, ``##PEAK TABLE``...). Lines may
start with spaces (the official test file TESTSPEC.DX does); keys are compared without spaces,
dashes and case, as the standard says labels are.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .base import Budget, ExtractionError, Metadata, Source

MAX_HEADER_BYTES = 256 << 10
_DATA_LABELS = {"XYDATA", "PEAKTABLE", "XYPOINTS", "DATATABLE", "NTUPLES", "RADATA"}
# Standard labels worth naming in the sidecar, by their normalised form.
_KNOWN = {
    "TITLE": "title",
    "JCAMPDX": "jcampVersion",
    "DATATYPE": "dataType",
    "DATACLASS": "dataClass",
    "ORIGIN": "origin",
    "OWNER": "owner",
    "DATE": "date",
    "LONGDATE": "longDate",
    "SPECTROMETERDATASYSTEM": "spectrometer",
    "INSTRUMENTPARAMETERS": "instrumentParameters",
    "XUNITS": "xUnits",
    "YUNITS": "yUnits",
    "NPOINTS": "points",
    "FIRSTX": "firstX",
    "LASTX": "lastX",
    "MOLFORM": "molecularFormula",
    "CASREGISTRYNO": "casNumber",
}


def label(key: str) -> str:
    return "".join(ch for ch in key.upper() if ch.isalnum())


class JcampExtractor:
    name = "jcamp"

    def accepts(self, name: str, head: bytes) -> bool:
        return PurePosixPath(name).suffix.lower() in (".jdx", ".dx", ".jcamp")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        with source.path.open("rb") as f:
            raw = f.read(MAX_HEADER_BYTES)
        text = raw.decode("utf-8", errors="replace") if not raw.startswith(b"\xff\xfe") else ""
        header: dict[str, str] = {}
        labels: dict[str, str] = {}
        for line in text.splitlines():
            budget.check()
            line = line.strip()
            if not line.startswith("##") or "=" not in line:
                continue
            key, _, value = line[2:].partition("=")
            norm = label(key)
            if norm in _DATA_LABELS or norm == "END":
                break
            value = value.split("$$", 1)[0].strip()  # "$$" starts a comment
            labels.setdefault(norm, value)
            if norm in _KNOWN:
                header.setdefault(_KNOWN[norm], value)
        if "TITLE" not in labels:
            raise ExtractionError(f"{source.name!r} has no JCAMP-DX header (no ##TITLE= label)")
        if "JCAMPDX" not in labels:
            raise ExtractionError(
                f"{source.name!r} has JCAMP-style labels but no ##JCAMP-DX= version: not a JCAMP-DX file"
            )
        return {**header, "labels": len(labels)}
