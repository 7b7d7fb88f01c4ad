"""The generic detector: media type from magic bytes first, the extension second. Pure.

Runs for every file, on the first bytes the hasher already read, so it costs no extra I/O. Where a
well-known PRONOM identifier (the UK National Archives' format registry) exists it is given too.
Binary vendor formats with no magic get application/octet-stream plus their extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import suffix

OCTET_STREAM = "application/octet-stream"

# (prefix, media type, PRONOM id or None, what it is)
_MAGIC: tuple[tuple[bytes, str, str | None, str], ...] = (
    (b"\x89HDF\r\n\x1a\n", "application/x-hdf5", None, "HDF5"),
    (b"\x89PNG\r\n\x1a\n", "image/png", None, "PNG"),
    (b"\xff\xd8\xff", "image/jpeg", None, "JPEG"),
    (b"II*\x00", "image/tiff", "fmt/353", "TIFF"),
    (b"MM\x00*", "image/tiff", "fmt/353", "TIFF"),
    (b"GIF8", "image/gif", None, "GIF"),
    (b"\x1f\x8b", "application/gzip", "x-fmt/266", "gzip"),
    (b"BIO-LOGIC MODULAR FILE", OCTET_STREAM, None, "BioLogic EC-Lab binary (.mpr)"),
    # FCS 2.0-3.2: "FCS" and the version, then the segment offsets (the media type is ISAC's).
    (b"FCS2.0", "application/vnd.isac.fcs", None, "Flow Cytometry Standard (FCS)"),
    (b"FCS3.", "application/vnd.isac.fcs", None, "Flow Cytometry Standard (FCS)"),
)
# PDF versions and their PRONOM ids, from the "%PDF-1.x" header.
_PDF = {
    "1.0": "fmt/14",
    "1.1": "fmt/15",
    "1.2": "fmt/16",
    "1.3": "fmt/17",
    "1.4": "fmt/18",
    "1.5": "fmt/19",
    "1.6": "fmt/20",
    "1.7": "fmt/276",
}

#: PRONOM's names of the formats above, for the crate's format entities and the files' descriptions.
PRONOM_NAMES = {
    "fmt/353": "Tagged Image File Format",
    "x-fmt/266": "GZIP Format",
    "x-fmt/263": "ZIP Format",
    "x-fmt/18": "Comma Separated Values",
    "x-fmt/111": "Plain Text File",
    "fmt/817": "JSON Data Interchange Format",
    "fmt/101": "Extensible Markup Language",
    **{pronom: f"Acrobat PDF {version} - Portable Document Format" for version, pronom in _PDF.items()},
}
# Names of formats PRONOM has no identifier for here, by media type.
_MEDIA_NAMES = {
    "application/x-hdf5": "HDF5",
    "application/vnd.eln+zip": "ELN Consortium archive (.eln)",
    "application/vnd.isac.fcs": "Flow Cytometry Standard (FCS)",
    "chemical/x-jcamp-dx": "JCAMP-DX",
    "text/tab-separated-values": "Tab-separated values",
    "text/markdown": "Markdown text",
    "image/png": "PNG image",
    "image/jpeg": "JPEG image",
    "image/gif": "GIF image",
}

_ZIP_TYPES = {".eln": "application/vnd.eln+zip", ".zip": "application/zip"}
_TEXT_TYPES = {
    ".csv": ("text/csv", "x-fmt/18"),
    ".tsv": ("text/tab-separated-values", None),
    ".json": ("application/json", "fmt/817"),
    ".md": ("text/markdown", None),
    ".jdx": ("chemical/x-jcamp-dx", None),
    ".dx": ("chemical/x-jcamp-dx", None),
    ".jcamp": ("chemical/x-jcamp-dx", None),
    ".xrdml": ("application/xml", "fmt/101"),
    ".mzml": ("application/xml", "fmt/101"),
    ".xml": ("application/xml", "fmt/101"),
}
_EXTENSION_ONLY = {".h5": "application/x-hdf5", ".hdf5": "application/x-hdf5", ".nxs": "application/x-hdf5"}
_JCAMP = re.compile(rb"^\s*##TITLE=", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Detected:
    media_type: str
    pronom: str | None
    #: How the type was decided: "magic", "content" or "extension".
    basis: str
    note: str | None = None

    @property
    def name(self) -> str:
        """The format's name in words: PRONOM's where it has one."""
        return (
            PRONOM_NAMES.get(self.pronom or "")
            or _MEDIA_NAMES.get(self.media_type)
            or self.note
            or self.media_type
        )

    def as_metadata(self) -> dict[str, str]:
        out = {"mediaType": self.media_type, "detectedBy": self.basis, "name": self.name}
        if self.pronom:
            out["pronom"] = self.pronom
        if self.note:
            out["format"] = self.note
        return out


def detect(name: str, head: bytes) -> Detected:
    """The media type of a file called ``name`` whose first bytes are ``head``."""
    extension = suffix(name)
    for prefix, media, pronom, what in _MAGIC:
        if head.startswith(prefix):
            return Detected(media, pronom, "magic", what)
    if head.startswith(b"%PDF-"):
        return Detected("application/pdf", _PDF.get(head[5:8].decode("ascii", "replace")), "magic", "PDF")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Detected(_ZIP_TYPES.get(extension, "application/zip"), "x-fmt/263", "magic", "ZIP container")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    xml_named = extension in (".xml", ".xrdml", ".mzml")
    if stripped.startswith(b"<?xml") or (xml_named and stripped.startswith(b"<")):
        return Detected("application/xml", "fmt/101", "content", "XML")
    if _JCAMP.match(stripped) and extension in (".jdx", ".dx", ".jcamp"):
        return Detected("chemical/x-jcamp-dx", None, "content", "JCAMP-DX")
    if extension in _TEXT_TYPES and _looks_like_text(head):
        media, pronom = _TEXT_TYPES[extension]
        return Detected(media, pronom, "extension")
    if extension in _EXTENSION_ONLY:
        return Detected(_EXTENSION_ONLY[extension], None, "extension")
    if _looks_like_text(head):
        return Detected("text/plain", "x-fmt/111", "content")
    return Detected(OCTET_STREAM, None, "extension", f"unrecognised binary ({extension or 'no extension'})")


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:
            return True  # a multi-byte character cut by the end of the sample
    # Windows-1252 text (µ, ², °C in a BioLogic settings file): no control bytes but whitespace.
    return all(b >= 0x20 or b in b"\t\r\n\x0c" for b in head)
