"""HDF5 and NeXus (optional: ``pip install fair-agent[hdf5]``): root attributes and NXentry summaries.

External links are never followed (h5py raises when it follows one to a missing file): a link to a
file in the same folder that is not there is reported as missing, a link out of the folder (an
absolute path, "..") is reported as such without being looked for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path, PurePosixPath
from typing import Any

from .base import Budget, ExtractionError, Metadata, Source

MAX_ENTRIES = 50
_SUFFIXES = {".h5", ".hdf5", ".nxs", ".nx5", ".hdf"}


def available() -> bool:
    # find_spec, not import: h5py brings numpy, tens of MB the agent pays only when it reads HDF5.
    return importlib.util.find_spec("h5py") is not None


#: Datasets read for their value: small ones only (a "title" can be a gigabyte of compressed text).
MAX_VALUE_BYTES = 64 << 10


def _small(item: Any) -> bool:
    return bool(item.size <= 64 and item.dtype.itemsize * max(item.size, 1) <= MAX_VALUE_BYTES)


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_text(v) for v in value][:20]
    return value if isinstance(value, str | int | float | bool) else str(value)


class Hdf5Extractor:
    name = "hdf5"
    #: libhdf5 is C: a damaged file can crash it or make it loop holding the GIL (see isolation).
    isolated = True

    def accepts(self, name: str, head: bytes) -> bool:
        return head.startswith(b"\x89HDF\r\n\x1a\n") or PurePosixPath(name).suffix.lower() in _SUFFIXES

    def extract(self, source: Source, budget: Budget) -> Metadata:
        import h5py

        try:
            handle = h5py.File(source.path, "r")
        except OSError as exc:
            raise ExtractionError(f"{source.name!r} is not a readable HDF5 file: {exc}") from None
        with handle:
            attributes = {k: _text(v) for k, v in list(handle.attrs.items())[:50]}
            result: dict[str, Any] = {
                "attributes": {k: v for k, v in attributes.items() if len(str(v)) < 4096}
            }
            entries: list[dict[str, Any]] = []
            broken: list[dict[str, str]] = []
            outside: list[dict[str, str]] = []
            for name in list(handle.keys())[:MAX_ENTRIES]:
                budget.check()
                link = handle.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    _note_link(name, link, source.folder, broken, outside)
                    continue
                group = handle.get(name)
                if not isinstance(group, h5py.Group):
                    continue
                if _text(group.attrs.get("NX_class")) == "NXentry":
                    entries.append(_entry(name, group, source.folder, broken, outside))
            if entries:
                result["nexusEntries"] = entries
            if broken:
                result["missingExternalLinks"] = broken
            if outside:
                result["externalLinksOutsideFolder"] = outside
            return result


def _note_link(
    name: str, link: Any, folder: Path, broken: list[dict[str, str]], outside: list[dict[str, str]]
) -> None:
    """Report an external link that cannot be followed; never follow one.

    Only a target inside the file's folder is looked for: whether /etc/shadow or ../../x exists is
    none of the sidecar's business, and telling it would let a file probe the machine.
    """
    entry = {"name": name, "file": link.filename, "path": link.path}
    if any(e["name"] == name for e in (*broken, *outside)):
        return
    target = PurePosixPath(link.filename)
    if target.is_absolute() or ".." in target.parts:
        outside.append(entry)
    elif not (folder / target).exists():
        broken.append(entry)


def _entry(
    name: str, group: Any, folder: Path, broken: list[dict[str, str]], outside: list[dict[str, str]]
) -> dict[str, Any]:
    import h5py

    def read(key: str) -> Any:
        link = group.get(key, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            _note_link(f"{name}/{key}", link, folder, broken, outside)
            return None
        item = group.get(key)
        return _text(item[()]) if isinstance(item, h5py.Dataset) and _small(item) else None

    out: dict[str, Any] = {"name": name}
    for key in ("title", "start_time", "end_time"):
        value = read(key)
        if value is not None:
            out[key] = value
    for child_name in group:
        link = group.get(child_name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            # Never followed: it may point at a file that is not there.
            _note_link(f"{name}/{child_name}", link, folder, broken, outside)
            continue
        child = group.get(child_name)
        kind = _text(child.attrs.get("NX_class")) if isinstance(child, h5py.Group) else None
        if kind in ("NXinstrument", "NXsample"):
            label = child.get("name")
            key = "instrument" if kind == "NXinstrument" else "sample"
            small = isinstance(label, h5py.Dataset) and _small(label)
            out.setdefault(key, _text(label[()]) if small else child_name)
    return out
