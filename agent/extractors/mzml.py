"""mzML mass spectrometry runs (HUPO-PSI, ``.mzML``, also wrapped as ``indexedmzML``): the header.

An mzML file is a small header (controlled vocabularies, file description with the vendor source
files and their checksums, parameter groups, samples, software, instrument configurations, data
processing) and a ``<run>`` whose ``<spectrumList count=...>`` and, after all spectra,
``<chromatogramList count=...>`` hold gigabytes of base64 arrays. Almost everything is said in
``cvParam``s of the PSI-MS ontology (accession plus name); names are read as written.

The header is streamed with defusedxml (no DTD, so no entity tricks), within MAX_BYTES, up to the
first spectrum or chromatogram: no array is ever parsed. The chromatogram count comes after the
spectra, so it is read from the file's last TAIL_BYTES instead (the ``<chromatogramList>`` tag of a
plain mzML, or the chromatogram index of an indexedmzML), whose closing tag also says whether the
file is complete. Nothing in between is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from .base import Budget, ExtractionError, Metadata, Source, acquisition_time, suffix
from .xmlformats import MAX_BYTES, Bounded, list_events, local_name, unreadable

#: Real headers have a few hundred elements; far more is not an mzML header.
MAX_ELEMENTS = 20_000
#: The end of the file: the chromatogram list (or index) and the closing tag.
TAIL_BYTES = 1 << 20
_LIMITS = {"sourceFiles": 50, "software": 50, "instrumentConfigurations": 20, "samples": 50}
_ROOTS = ("mzML", "indexedmzML")
_SERIAL = "MS:1000529"
_CHECKSUMS = {"MS:1000568", "MS:1000569", "MS:1003151"}  # MD5, SHA-1, SHA-256
# What the mzML mapping rules allow in an instrumentConfiguration besides the model: instrument
# attributes (serial number, customization, transmission) and ion optics attributes, then ion optics types.
_NOT_MODEL = {f"MS:1000{n:03}" for n in (529, 32, 236, 487, 216, 304, 308, 319)} | {
    f"MS:1000{n}" for n in (597, 221, 246, 275, 281, 286, 288, 300, 307, 309, 310, 311, 320)
}
# A vendor's raw format (or native-id format) says who made the instrument that wrote the file.
_VENDOR_OF = {
    **dict.fromkeys(("MS:1000563", "MS:1000768"), "Thermo Fisher Scientific"),
    **dict.fromkeys(("MS:1000526", "MS:1000769"), "Waters"),
    **dict.fromkeys(("MS:1000562", "MS:1000770", "MS:1003448"), "SCIEX"),
    **dict.fromkeys(("MS:1000815", "MS:1000772", "MS:1002817", "MS:1002818"), "Bruker Daltonics"),
    **dict.fromkeys(("MS:1001509", "MS:1001508"), "Agilent"),
    **dict.fromkeys(("MS:1003009", "MS:1000929", "MS:1002898"), "Shimadzu"),
}
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_CHROMATOGRAM_LIST = re.compile(rb"<(?:\w+:)?chromatogramList\b[^>]{0,4096}?\bcount=[\"'](\d{1,12})[\"']")
_CHROMATOGRAM_INDEX = re.compile(rb"<(?:\w+:)?index\s+name=[\"']chromatogram[\"']\s*>")
_NO_CHROMATOGRAMS = re.compile(rb"</(?:\w+:)?spectrumList>\s*</(?:\w+:)?run>")

Param = tuple[str, str, str]  # accession, name, value


def _children(element: Any, *names: str) -> list[Any]:
    return [child for child in element if local_name(child.tag)[1] in names]


def _order(component: Any) -> int:
    order = component.get("order", "")
    return int(order) if order.isdigit() and order.isascii() else 0


@dataclass
class _Reader:
    """What one file says, filled in as its header's elements end."""

    name: str
    root: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    run: dict[str, str] | None = None
    counts: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[Param]] = field(default_factory=dict)
    found: dict[str, Any] = field(default_factory=dict)
    vendor: str | None = None
    warnings: list[str] = field(default_factory=list)

    def header(self, raw: BinaryIO, budget: Budget) -> bool:
        """Read the start of the file; whether the end of the file is still to be looked at."""
        stack: list[str] = []
        stream = Bounded(raw, MAX_BYTES, budget)
        try:
            for seen, (event, element) in enumerate(list_events(stream)):
                budget.check()
                local = local_name(element.tag)[1]
                if event == "end":
                    stack.pop()
                    if local == "run":  # all read: what is not listed is not there
                        self.counts = {"spectrumList": "0", "chromatogramList": "0", **self.counts}
                        return True  # whether the document ends is for the tail to say
                    if self.end(local, element) or stack[-1:] == ["mzML"]:
                        element.clear()  # streaming: keep nothing of what was read
                    continue
                if not stack and local not in _ROOTS:
                    raise ExtractionError(f"{self.name!r} is not mzML: its root element is <{local}>")
                self.root = self.root or local
                stack.append(local)
                if local == "mzML":
                    self.attrs = dict(element.attrib)
                elif local == "run":
                    self.run = dict(element.attrib)
                elif local in ("spectrumList", "chromatogramList"):
                    self.counts[local] = element.get("count", "")
                # The arrays start here (and the chromatogram list comes after all spectra).
                if local in ("spectrum", "chromatogram", "chromatogramList"):
                    return True
                if seen > MAX_ELEMENTS and self.run is None:
                    raise ExtractionError(f"{self.name!r}: no mzML header has {MAX_ELEMENTS:,} elements")
                if seen > MAX_ELEMENTS:
                    return True
        except ExtractionError:
            raise  # the time budget ran out, or not mzML
        except Exception as exc:  # refused for safety, or ParseError and friends from expat
            if (error := unreadable(self.name, exc, began=bool(self.root))) is not None:
                raise error from None
            if self.run is None and stream.at_limit:
                raise ExtractionError(
                    f"{self.name!r}: the mzML header is over {MAX_BYTES >> 20} MiB"
                ) from None
            if self.run is None:
                raise ExtractionError(f"{self.name!r} breaks off in the mzML header: {exc}") from None
            if stream.at_limit:
                return True  # a long run header, not a broken file
            self.warnings.append(f"The document is cut off or damaged after the start of the run: {exc}.")
            return False
        if self.run is None:
            raise ExtractionError(f"{self.name!r} has no <run>: not an mzML document")
        return False

    def tail(self, tail: bytes) -> None:
        if b"\x00" in tail[-64:]:
            return  # UTF-16 or binary garbage: no byte pattern below would mean anything
        if not re.search(rb"</(?:\w+:)?" + self.root.encode() + rb">\s*\Z", tail):
            self.warnings.append(
                f"The document does not end with </{self.root}>: the file is incomplete "
                "(still being written, or cut off when it was copied)."
            )
        if "chromatogramList" in self.counts:
            return
        if match := _CHROMATOGRAM_LIST.search(tail):
            self.counts["chromatogramList"] = match.group(1).decode()
        elif match := _CHROMATOGRAM_INDEX.search(tail):
            section = re.split(rb"</(?:\w+:)?index>", tail[match.end() :], maxsplit=1)[0]
            self.counts["chromatogramList"] = str(len(re.findall(rb"<(?:\w+:)?offset\b", section)))
        elif _NO_CHROMATOGRAMS.search(tail):
            self.counts["chromatogramList"] = "0"

    def params(self, element: Any) -> list[Param]:
        """An element's cvParams, its referenced parameter groups' included."""
        found: list[Param] = []
        for child in _children(element, "referenceableParamGroupRef", "cvParam"):
            if local_name(child.tag)[1] == "cvParam":
                found.append((child.get("accession", ""), child.get("name", ""), child.get("value", "")))
            else:
                found.extend(self.groups.get(child.get("ref", ""), []))
        return found

    def add(self, key: str, **entry: Any) -> None:
        entries = self.found.setdefault(key, [])
        if len(entries) < _LIMITS.get(key, 50):
            entries.append({k: v for k, v in entry.items() if v not in (None, "", {})})

    def end(self, local: str, element: Any) -> bool:
        """Take in a finished element; whether it was one of ours (and can be dropped)."""
        if local == "referenceableParamGroup":
            self.groups[element.get("id", "")] = self.params(element)
        elif local == "fileContent":
            self.found["fileContent"] = [name for _, name, _ in self.params(element)][:50]
        elif local == "sourceFile":
            entry: dict[str, Any] = {"name": element.get("name"), "location": element.get("location")}
            for accession, name, value in self.params(element):
                self.vendor = self.vendor or _VENDOR_OF.get(accession)
                if accession in _CHECKSUMS:
                    entry["checksum"] = {"type": name, "value": value}
                elif name.endswith("nativeID format"):
                    entry["nativeIdFormat"] = name
                elif name.endswith((" format", " file")):
                    entry["fileFormat"] = name
            self.add("sourceFiles", **entry)
        elif local == "software":
            # mzML 1.1 names software by a cvParam ("custom unreleased software tool" keeps the
            # real name in its value) or a userParam; mzML 1.0 by a softwareParam with a version.
            named = _children(element, "cvParam", "softwareParam", "userParam")[:1]
            version = element.get("version") or next((p.get("version") for p in named), None)
            title = next((p.get("value") or p.get("name") for p in named), None)
            self.add("software", id=element.get("id"), name=title, version=version)
        elif local == "instrumentConfiguration":
            self.instrument(element)
        elif local == "sample":
            self.add("samples", id=element.get("id"), name=element.get("name"))
        elif local == "dataProcessing":
            refs = [m.get("softwareRef") for m in _children(element, "processingMethod")]
            self.add("dataProcessing", id=element.get("id"), software=list(dict.fromkeys(filter(None, refs))))
        else:
            return False
        return True

    def instrument(self, element: Any) -> None:
        # Without the ontology, the model is the configuration's first PSI-MS cvParam (direct or
        # from a referenced parameter group) that is no instrument attribute or ion optics term.
        # The generic "instrument model" term or a vendor's ("Waters instrument model") stands for
        # an unnamed model: its value (if any) is the model, its prefix the manufacturer.
        params = self.params(element)
        serial = next((value for accession, _, value in params if accession == _SERIAL), None)
        named = [(n, v) for a, n, v in params if a.startswith("MS:") and a not in _NOT_MODEL][:1]
        model = next((n or v for n, v in named), None)
        maker = None
        if model and model.endswith("instrument model"):
            maker = model.removesuffix("instrument model").strip() or None
            model = named[0][1] or None
        components: dict[str, list[str]] = {}
        parts = [part for parts in _children(element, "componentList") for part in parts]
        for part in sorted(_children(parts, "source", "analyzer", "detector"), key=_order):
            components.setdefault(local_name(part.tag)[1], []).extend(n for _, n, _ in self.params(part))
        # mzML 1.0 called the reference instrumentSoftwareRef.
        refs = _children(element, "softwareRef", "instrumentSoftwareRef")
        software = refs[0].get("ref") if refs else None
        entry = {"id": element.get("id"), "model": model, "manufacturer": maker, "serialNumber": serial}
        self.add("instrumentConfigurations", **entry, software=software, components=components)

    def count(self, element: str) -> int | None:
        if element not in self.counts:
            # Spectra come before chromatograms: a chromatogram list seen first means there are none.
            return 0 if element == "spectrumList" and "chromatogramList" in self.counts else None
        text = self.counts[element].strip()
        if text.isdigit() and text.isascii():
            return int(text)
        self.warnings.append(f"{element}/@count is {text!r}, not a number of items.")
        return None

    def metadata(self) -> Metadata:
        run = self.run or {}
        spectra, chromatograms = self.count("spectrumList"), self.count("chromatogramList")
        result: Metadata = {
            "mzmlVersion": self.attrs.get("version"),
            "mzmlId": self.attrs.get("id"),
            "indexed": self.root == "indexedmzML",
            "runId": run.get("id"),
            "spectrumCount": spectra,
            "chromatogramCount": chromatograms,
            **self.found,
        }
        if stamp := run.get("startTimeStamp", "").strip():
            try:  # Z is +00:00; an offset is kept; none stays none (the agent applies the site's zone)
                moment = datetime.fromisoformat(
                    stamp.replace("Z", "+00:00") if _DATETIME.fullmatch(stamp) else ""
                )
                result["acquisition"] = acquisition_time(moment, source="run/@startTimeStamp")
            except ValueError:
                self.warnings.append(f"run/@startTimeStamp {stamp!r} is not a date and time: none read.")
        result["instrument"] = instrument = self.instrument_summary(run)
        pairs = ((spectra, "spectrum", "spectra"), (chromatograms, "chromatogram", "chromatograms"))
        counts = ", ".join(f"{n:,} {one if n == 1 else many}" for n, one, many in pairs if n is not None)
        version = f" {result['mzmlVersion']}" if result["mzmlVersion"] else ""
        model = instrument.get("model", "")
        on = f" on {'an' if model[:1].lower() in 'aeiou' else 'a'} {model}" if model else ""
        result["description"] = f"mzML{version} mass spectrometry run{on}" + (f": {counts}" if counts else "")
        result["warnings"] = self.warnings
        return {k: v for k, v in result.items() if v is not None and v != [] and v != {}}

    def instrument_summary(self, run: dict[str, str]) -> dict[str, str]:
        """The run's instrument configuration (or the first), with its acquisition software."""
        configs: list[dict[str, Any]] = self.found.get("instrumentConfigurations", [])
        wanted = run.get("defaultInstrumentConfigurationRef") or run.get("instrumentConfigurationRef")
        config = next((c for c in configs if c.get("id") == wanted), configs[0] if configs else {})
        ref = config.get("software")
        found: list[dict[str, str]] = self.found.get("software", [])
        software = next((s for s in found if ref and s.get("id") == ref), {})
        version = software.get("version") if software.get("version") != "unknown" else None
        summary = {
            "model": config.get("model"),
            "serialNumber": config.get("serialNumber"),
            "manufacturer": config.get("manufacturer") or self.vendor,
            "software": " ".join(filter(None, (software.get("name"), version))),
        }
        return {k: v for k, v in summary.items() if v}


class MzmlExtractor:
    name = "mzml"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        return suffix(name) == ".mzml"

    def extract(self, source: Source, budget: Budget) -> Metadata:
        reader = _Reader(source.name)
        with source.path.open("rb") as raw:
            if reader.header(raw, budget):  # stopped early and well: the file's end says the rest
                size = raw.seek(0, 2)
                raw.seek(max(0, size - TAIL_BYTES))
                reader.tail(raw.read(TAIL_BYTES))
        return reader.metadata()
