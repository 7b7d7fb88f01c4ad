"""Metadata extractors, one module per format family, chosen by file type.

Every file gets the generic detector (media type from magic bytes, PRONOM id where one is
well known). A file whose type an extractor accepts also gets that extractor's metadata. Sites add
extractors without forking through the ``fair_agent.extractors`` entry point group; theirs are
asked first.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.records import EXTRACTION_FAILURE
from .base import (
    Budget,
    ExtractionError,
    ExtractionTimeout,
    Extractor,
    Metadata,
    Source,
    UnsafeArchiveError,
    UnsafeInputError,
)
from .biologic import BiologicExtractor
from .bounds import bound
from .eln import ElnExtractor
from .fcs import FcsExtractor
from .generic import Detected, detect
from .hdf5 import Hdf5Extractor
from .hdf5 import available as hdf5_available
from .jcamp import JcampExtractor
from .mzml import MzmlExtractor
from .tabular import TabularExtractor
from .xmlformats import XmlExtractor
from .xrdml import XrdmlExtractor

log = logging.getLogger("fair_agent.extractors")

ENTRY_POINT_GROUP = "fair_agent.extractors"

__all__ = [
    "Budget",
    "Detected",
    "ExtractionError",
    "ExtractionTimeout",
    "Extractor",
    "Metadata",
    "Source",
    "UnsafeArchiveError",
    "UnsafeInputError",
    "choose",
    "detect",
    "load_extractors",
    "run_derive",
    "run_extractor",
]


def builtin_extractors() -> list[Extractor]:
    # The first that accepts a file reads it: the specific XML formats before XML in general.
    found: list[Extractor] = [
        ElnExtractor(),
        JcampExtractor(),
        FcsExtractor(),
        MzmlExtractor(),
        XrdmlExtractor(),
        XmlExtractor(),
        BiologicExtractor(),
    ]
    if hdf5_available():
        found.append(Hdf5Extractor())
    found.append(TabularExtractor())
    return found


def load_extractors() -> list[Extractor]:
    """Site extractors registered by entry point first, then the built-in ones."""
    site: list[Extractor] = []
    # Imported here: the extraction workers load extractors by name and never ask (20 ms).
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            site.append(entry.load()())
        except Exception as exc:
            # A broken plug-in must not stop ingestion; say so loudly.
            log.error(f"extractor {entry.name!r} from {entry.value!r} could not be loaded: {exc}")
    return site + builtin_extractors()


def choose(extractors: list[Extractor], name: str, head: bytes) -> Extractor | None:
    return next((e for e in extractors if e.accepts(name, head)), None)


def run_derive(
    source: Source, request: dict[str, Any], out_fd: int | None, metadata: Metadata, seconds: float
) -> Metadata:
    """A rule's derived table of a file whose metadata was read (blocking), with its own time
    limit; its report, or ``{"error": ...}`` saying why there is none (the file is ingested)."""
    from ..core.transform import TransformSpec
    from .derive import derive

    try:
        if out_fd is None:
            raise ExtractionError("the agent sent no file to write the derived table to")
        if EXTRACTION_FAILURE in metadata:
            raise ExtractionError("the file's table could not be read")
        detected = {
            str(c.get("label", c.get("name"))): str(c.get("type"))
            for c in metadata.get("columns", [])
            if isinstance(c, dict)
        }
        return derive(
            source,
            TransformSpec.model_validate(request["spec"]),
            out_fd,
            Budget(seconds),
            detected=detected,
            provenance=request.get("provenance", {}),
        )
    except ExtractionError as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {"error": f"{source.name!r} needs more memory to derive its table than is available"}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_extractor(extractor: Extractor, source: Source, seconds: float) -> Metadata:
    """Run one extractor on one file (blocking); any failure becomes an ExtractionError."""
    try:
        metadata = extractor.extract(source, Budget(seconds))
    except ExtractionError:
        raise
    except MemoryError:
        raise ExtractionError(f"{source.name!r} needs more memory to read than is available") from None
    except Exception as exc:
        what = f"{type(exc).__name__}: {exc}"
        raise ExtractionError(
            f"{source.name!r} could not be read by the {extractor.name} extractor: {what}"
        ) from None
    return bound({"extractor": extractor.name, **metadata})
