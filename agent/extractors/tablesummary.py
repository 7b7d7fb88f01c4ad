"""What a vendor text export is, for people: its instrument, its reads and one sentence.

The instrument is what the header names (``Device: Spark``, ``Serial number: ...``,
``Application: SparkControl V2.3``, ``#Instrument=LabRAM HR Evol``); its maker is added only where
the product or its software names it unmistakably (SparkControl and Spark are Tecan's). A plate
reader's settings come in blocks that start with ``Mode`` (Kinetic, Absorbance, Fluorescence Top
Reading): each becomes a measurement with its own settings, so a later read's wavelength and
gain are not lost behind the first one's.
"""

from __future__ import annotations

from typing import Any

from .base import Metadata, counted

#: Header keys (lower case) that name the instrument, and whether the value is its model too.
_NAME_KEYS = {
    "device": True,
    "instrument": True,
    "instrument name": False,
    "instrument model": True,
    "model": True,
    "spectrometer": True,
    "data measured with spectrometer [name]": False,  # AvaSoft: a name the user gives
}
_SERIAL_KEYS = ("serial number", "serial no.", "serial no", "serial", "s/n", "instrument serial number")
_SOFTWARE_KEYS = ("application", "software", "program", "software version")
_MAKER_KEYS = ("manufacturer", "vendor", "make")
#: Products and software whose maker their name says (the start of the name, lower case).
_MAKERS = (
    ("sparkcontrol", "Tecan"),
    ("spark", "Tecan"),
    ("infinite", "Tecan"),
    ("i-control", "Tecan"),
    ("magellan", "Tecan"),
    ("labspec", "HORIBA"),
    ("labram", "HORIBA"),
    ("xplora", "HORIBA"),
    ("avasoft", "Avantes"),
    ("avaspec", "Avantes"),
    ("gen5", "BioTek"),
    ("softmax", "Molecular Devices"),
    ("spectramax", "Molecular Devices"),
    ("clariostar", "BMG LABTECH"),
    ("ec-lab", "BioLogic"),
    ("irtracer", "Shimadzu"),
)
MAX_MEASUREMENTS = 64


def maker_of(*names: str) -> str | None:
    """The manufacturer a product or software name makes certain, if any."""
    for name in names:
        lowered = name.lower()
        for prefix, maker in _MAKERS:
            if lowered.startswith(prefix) and lowered[len(prefix) : len(prefix) + 1] in ("", " ", "-", "_"):
                return maker
    return None


def instrument_from(header: dict[str, str]) -> Metadata:
    """The ``instrument`` entry as the header names it; empty when it names none."""
    by_key = {k.lower(): v for k, v in reversed(header.items())}  # the first of equal keys wins
    out: Metadata = {}
    for key, is_model in _NAME_KEYS.items():
        if key in by_key and "name" not in out:
            out["name"] = by_key[key]
            if is_model:
                out["model"] = by_key[key]
    for field, keys in (("manufacturer", _MAKER_KEYS), ("serialNumber", _SERIAL_KEYS)):
        value = next((by_key[k] for k in keys if k in by_key), None)
        if value:
            out[field] = value
    software = next((by_key[k] for k in _SOFTWARE_KEYS if k in by_key), None)
    if software:
        out["software"] = software
    maker = maker_of(out.get("model", ""), software or "")
    if maker and "manufacturer" not in out and out:
        out["manufacturer"] = maker
    return out


def measurements_of(blocks: list[list[tuple[str, str]]]) -> list[Metadata]:
    """One entry per header block that starts with ``Mode``: {mode, name, settings}."""
    found: list[Metadata] = []
    for block in blocks:
        if not block or block[0][0].lower() != "mode":
            continue
        entry: Metadata = {"mode": block[0][1]}
        settings: dict[str, str] = {}
        for key, value in block[1:]:
            if key.lower() == "name" and "name" not in entry:
                entry["name"] = value
            else:
                settings.setdefault(key, value)
        if settings:
            entry["settings"] = settings
        found.append(entry)
        if len(found) == MAX_MEASUREMENTS:
            break
    return found


def describe(meta: Metadata) -> str:
    """One sentence on what the export holds."""
    source = _source(meta)
    columns: list[dict[str, Any]] = meta.get("columns", [])
    wells = meta.get("wells")
    if wells:
        return _describe_plate(meta, source, columns, wells["count"])
    if not columns:
        return "Text file with no table" + (f" ({source})" if source else "")
    rows = int(meta.get("rowCount", 0))
    text = f"Text table, {counted(len(columns), 'column')}, {counted(rows, 'row')}"
    if meta.get("tables", 1) > 1:
        text += f", the first of {meta['tables']} tables"
    return text + (f" ({source})" if source else "")


def _describe_plate(meta: Metadata, source: str, columns: list[dict[str, Any]], wells: int) -> str:
    cycles = int(meta.get("observationCount") or meta.get("rowCount") or 0)
    timed = any(c["name"] in ("Time", "Cycle") for c in columns)
    kind = "kinetics" if timed and cycles > 1 else "read"
    what = f"{source} plate-reader {kind}" if source else f"Plate-reader {kind}"
    labels = meta.get("tableLabels")
    if labels:
        what += f" ({', '.join(labels)})"
    # Tables are counted in the first 64 KiB only: a count is given where it is known.
    parts = [counted(int(meta["tables"]), "table")] if meta.get("tables") else []
    parts += [counted(wells, "well"), counted(cycles, "cycle" if timed else "value")]
    return f"{what}: {', '.join(parts)}"


def _source(meta: Metadata) -> str:
    instrument = meta.get("instrument", {})
    header = meta.get("header", {})
    data_type = header.get("DATA TYPE") or header.get("DATATYPE")
    if instrument.get("model"):
        who = " ".join(p for p in (instrument.get("manufacturer"), instrument["model"]) if p)
    elif instrument.get("name"):
        who = f"instrument {instrument['name']}"
    else:
        who = instrument.get("software", "")
    return "; ".join(p for p in (data_type, who) if p)
