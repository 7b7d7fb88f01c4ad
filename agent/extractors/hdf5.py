"""HDF5 and NeXus (optional: ``pip install fair-agent[hdf5]``): root attributes and NXentry summaries.

Of each NXentry: title, times, application definition (``definition``, e.g. NXmx, with its version;
NXsubentry definitions too), experiment, program, instrument and its source, sample and users. NeXus
strings come fixed-length, variable-length or as one-element arrays (shape (1,)); all read as the
same text: a one-element array is its element, bytes are decoded. Only small values are read (a
"title" can be a gigabyte of compressed text).

External links are never followed (h5py raises when it follows one to a missing file): a link to a
file in the same folder that is not there is reported as missing, a link out of the folder (an
absolute path, "..") is reported as such without being looked for.
"""

from __future__ import annotations

import importlib.util
import math
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

from .base import Budget, ExtractionError, Metadata, Source, acquisition_time, iso_seconds, suffix

MAX_ENTRIES = 50
#: Children of one group looked at (a group can hold millions), and NXuser names kept.
MAX_CHILDREN = 1000
MAX_USERS = 10
#: Datasets and attributes read for their value: small ones only.
MAX_VALUE_BYTES = 64 << 10
_SUFFIXES = {".h5", ".hdf5", ".nxs", ".nx5", ".hdf"}
_ROOT_ATTRIBUTES = ("file_time", "creator", "HDF5_Version", "NeXus_version")
_ENTRY_FIELDS = (
    "title",
    "start_time",
    "end_time",
    "duration",
    "definition",
    "experiment_identifier",
    "program_name",
)
# Attributes of fields worth keeping, and the key each gets in the summary.
_ENTRY_ATTRIBUTES = {
    "definition": {"version": "definitionVersion", "URL": "definitionURL"},
    "program_name": {"version": "programVersion"},
}
_INSTRUMENT_ATTRIBUTES = {"name": {"short_name": "instrumentShortName"}}


def available() -> bool:
    # find_spec, not import: h5py brings numpy, tens of MB the agent pays only when it reads HDF5.
    return importlib.util.find_spec("h5py") is not None


def _small(item: Any, items: int = 64) -> bool:
    """Whether a dataset or attribute is small enough to read (an empty one, shape None, is not)."""
    if item.shape is None:
        return False
    size = math.prod(item.shape)
    return bool(size <= items and item.dtype.itemsize * max(size, 1) <= MAX_VALUE_BYTES)


def _text(value: Any) -> Any:
    """A value as JSON: bytes decoded, a one-element array its element, lists at most 20 long."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return _text(value[0]) if len(value) == 1 else [_text(v) for v in value[:20]]
    return value if isinstance(value, str | int | float | bool) else str(value)


def _attribute(obj: Any, name: str) -> Any:
    """A small attribute's value; None when there is none, or none that can be read."""
    try:
        if name not in obj.attrs:
            return None
        # Any number of items within the byte limit, as always: _text keeps the first 20.
        return _text(obj.attrs[name]) if _small(obj.attrs.get_id(name), MAX_VALUE_BYTES) else None
    except (OSError, TypeError, ValueError, KeyError, RuntimeError):
        return None  # a type h5py cannot convert: the attribute is left out, not the file


class _Reader:
    """Reads one file's entries; notes every external link it meets instead of following it."""

    def __init__(self, folder: Path, budget: Budget) -> None:
        self.folder, self.budget = folder, budget
        self.broken: list[dict[str, str]] = []
        self.outside: list[dict[str, str]] = []
        #: NXinstrument/name of each entry that has one (its group's name is no instrument's name).
        self.instrument_names: dict[str, str] = {}

    def note(self, name: str, link: Any) -> None:
        """Report an external link that cannot be followed; never follow one.

        Only a target inside the file's folder is looked for: whether /etc/shadow or ../../x exists
        is none of the sidecar's business, and telling it would let a file probe the machine.
        """
        entry = {"name": name, "file": link.filename, "path": link.path}
        if any(e["name"] == name for e in (*self.broken, *self.outside)):
            return
        target = PurePosixPath(link.filename)
        if target.is_absolute() or ".." in target.parts:
            self.outside.append(entry)
        elif not (self.folder / target).exists():
            self.broken.append(entry)

    def get(self, group: Any, key: str, where: str) -> Any:
        """The object at ``key``, or None; an external link is noted, not followed."""
        import h5py

        link = group.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            self.note(where, link)
            return None
        return None if link is None else group.get(key)

    def fields(
        self,
        group: Any,
        keys: tuple[str, ...],
        where: str,
        attributes: dict[str, dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """The small datasets ``keys`` of ``group``, and the ``attributes`` of theirs asked for."""
        import h5py

        out: dict[str, Any] = {}
        for key in keys:
            item = self.get(group, key, f"{where}/{key}")
            if not (isinstance(item, h5py.Dataset) and _small(item)):
                continue
            out[key] = _text(item[()])
            for attribute, label in (attributes or {}).get(key, {}).items():
                value = _attribute(item, attribute)
                if value is not None:
                    out[label] = value
        return out

    def groups(self, group: Any, where: str) -> list[tuple[str, Any, Any]]:
        """The child groups of ``group`` (at most MAX_CHILDREN looked at) with their NX_class."""
        import h5py

        found = []
        for name in islice(group, MAX_CHILDREN):
            self.budget.check()
            child = self.get(group, name, f"{where}/{name}" if where else name)
            if isinstance(child, h5py.Group):
                found.append((name, child, _attribute(child, "NX_class")))
        return found

    def entry(self, name: str, group: Any) -> dict[str, Any]:
        out = {"name": name, **self.fields(group, _ENTRY_FIELDS, name, _ENTRY_ATTRIBUTES)}
        users: list[Any] = []
        for child_name, child, kind in self.groups(group, name):
            where = f"{name}/{child_name}"
            if kind == "NXinstrument" and "instrument" not in out:
                out.update(self.instrument(name, child_name, child))
            elif kind == "NXsample" and "sample" not in out:
                out["sample"] = self.fields(child, ("name",), where).get("name", child_name)
            elif kind == "NXuser" and len(users) < MAX_USERS:
                users.extend(self.fields(child, ("name",), where).values())
            elif kind == "NXsubentry":
                found = self.fields(child, ("definition", "title"), where, _ENTRY_ATTRIBUTES)
                out.setdefault("subentries", []).append({"name": child_name, **found})
        return {**out, "users": users} if users else out

    def instrument(self, entry: str, name: str, group: Any) -> dict[str, Any]:
        where = f"{entry}/{name}"
        named = self.fields(group, ("name",), where, _INSTRUMENT_ATTRIBUTES)
        if isinstance(named.get("name"), str):
            self.instrument_names[entry] = named["name"]
        # Without a name of its own, the group's name says which group it is (as it always did).
        out = {"instrument": named.pop("name", name), **named}
        sources = [(n, g) for n, g, kind in self.groups(group, where) if kind == "NXsource"]
        if sources:
            out["source"] = self.fields(sources[0][1], ("name", "probe", "type"), f"{where}/{sources[0][0]}")
        return out


class Hdf5Extractor:
    #: libhdf5 is C: a damaged file can crash it or make it loop holding the GIL; extractors run
    #: in worker processes with hard limits for that reason among others (see isolation).
    name = "hdf5"
    #: libhdf5 can crash (SIGSEGV) or loop holding the GIL on a damaged file.
    crash_free = False

    def accepts(self, name: str, head: bytes) -> bool:
        return head.startswith(b"\x89HDF\r\n\x1a\n") or suffix(name) in _SUFFIXES

    def extract(self, source: Source, budget: Budget) -> Metadata:
        import h5py

        try:
            handle = h5py.File(source.path, "r")
        except OSError as exc:
            raise ExtractionError(f"{source.name!r} is not a readable HDF5 file: {exc}") from None
        with handle:
            names = list(islice(handle.attrs, 50))
            attributes = {k: _attribute(handle, k) for k in names}
            result: dict[str, Any] = {
                "attributes": {k: v for k, v in attributes.items() if v is not None and len(str(v)) < 4096}
            }
            result.update({k: result["attributes"][k] for k in _ROOT_ATTRIBUTES if k in result["attributes"]})
            reader = _Reader(source.folder, budget)
            found = [(name, group) for name, group, kind in reader.groups(handle, "") if kind == "NXentry"]
            entries = [reader.entry(name, group) for name, group in found[:MAX_ENTRIES]]
            result.update(_summary(entries, reader, len(handle)))
            return result


def _summary(entries: list[dict[str, Any]], reader: _Reader, objects: int) -> dict[str, Any]:
    """The entries and links as they always were, and the keys every format shares."""
    out: dict[str, Any] = {"nexusEntries": entries} if entries else {}
    if reader.broken:
        out["missingExternalLinks"] = reader.broken
    if reader.outside:
        out["externalLinksOutsideFolder"] = reader.outside
    warnings = [
        f"the external link {e['name']!r} points to {e['file']!r}, not in the folder" for e in reader.broken
    ]
    warnings += [f"the external link {e['name']!r} points outside the folder" for e in reader.outside]
    if entries:
        out.update(_conventions(entries, reader.instrument_names.get(entries[0]["name"]), warnings))
    else:
        objects_text = f"{objects} object{'' if objects == 1 else 's'} at the root"
        out["description"] = f"HDF5 data with no NeXus entry ({objects_text})"
    return {**out, "warnings": warnings[:20]} if warnings else out


def _conventions(entries: list[dict[str, Any]], instrument: str | None, warnings: list[str]) -> Metadata:
    """acquisition, instrument and description, from the first entry."""
    out: dict[str, Any] = {"instrument": {"name": instrument}} if instrument is not None else {}
    acquisition = _acquisition(entries[0], warnings)
    if acquisition is not None:
        out["acquisition"] = acquisition
    return {**out, "description": _description(entries, instrument)}


def _acquisition(entry: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """The entry's start_time and end_time, each as written if it is ISO 8601 (as NeXus says)."""
    times = {key: entry[key] for key in ("start_time", "end_time") if key in entry}
    read = {key: iso_seconds(value) for key, value in times.items()}
    for key in (key for key, value in read.items() if value is None):
        warnings.append(f"the {key} of entry {entry['name']!r} is not ISO 8601: {times[key]!r}")
    start = read.get("start_time")
    if start is None:
        return None
    return acquisition_time(start, read.get("end_time"), source=f"/{entry['name']}/start_time")


def _description(entries: list[dict[str, Any]], instrument: Any) -> str:
    first = entries[0]
    definitions = [first.get("definition"), *(s.get("definition") for s in first.get("subentries", []))]
    definition = next((d for d in definitions if isinstance(d, str) and d), None)
    text = f"NeXus {definition} data" if definition else "NeXus data"
    text += (
        f": {len(entries)} entries, the first {first['name']!r}"
        if len(entries) > 1
        else f": entry {first['name']!r}"
    )
    title = first.get("title")
    if isinstance(title, str) and title.strip():
        text += f" ({title.strip()[:80]!r})"
    return f"{text}, instrument {instrument!r}" if instrument is not None else text
