"""The session folder's ``ro-crate-metadata.json``: an attached RO-Crate 1.2. Pure functions.

The crate must come out byte-identical when a batch is redone after a crash, so nothing in it
depends on the clock: ``datePublished`` is the newest ``dateModified`` of its files.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .. import AGENT_ENTITY_ID, AGENT_NAME, AGENT_URL, __version__
from ..core.config import SiteSettings
from ..core.naming import CRATE_NAME, display_name, relative_id
from .metadata import RO_CRATE_CONTEXT, organisation_entity

RO_CRATE_SPEC = "https://w3id.org/ro/crate/1.2"
INGEST_ACTION_ID = "#fair-agent-ingest"
NO_LICENSE_ID = "#license-not-chosen"
# Fixed namespace for session identifiers: uuid5(namespace, "<root name>/<session>").
SESSION_NAMESPACE = uuid.UUID("6f1c2b1e-52f4-4a55-9d0f-3f1f5a0c2a61")


def session_identifier(root_name: str, session: str) -> str:
    # Percent-encoded first: names that are not valid UTF-8 still give a stable identifier.
    return f"urn:uuid:{uuid.uuid5(SESSION_NAMESPACE, relative_id(f'{root_name}/{session}'))}"


def crate_can_list(relpath: str) -> bool:
    """RO-Crate ids are Unicode: a name that is not valid UTF-8 cannot be resolved by a crate reader."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def entity_group(stored: str) -> list[dict[str, Any]]:
    """A ledger record's crate entities: a list (File entity first), or a lone File entity."""
    value = json.loads(stored)
    return value if isinstance(value, list) else [value]


def build_crate(
    *,
    root_name: str,
    session: str,
    entities: Iterable[dict[str, Any]],
    site: SiteSettings,
    contextual: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """An RO-Crate describing every ingested file of one session folder.

    ``entities`` are the File entities; ``contextual`` the entities they refer to (the variables a
    table measured, and what rules added: instruments, people, organisations, licenses). The root
    dataset gathers the files' creators, keywords and (when all agree) license; the ingest action
    links the lab's instruments, this software, the files and the metadata it made.
    """
    files = sorted(entities, key=lambda e: str(e["@id"]))
    extras = sorted({str(e["@id"]): e for e in contextual}.values(), key=lambda e: str(e["@id"]))
    license_ref, license_entity = _license(files, site)
    root = _root_dataset(root_name, session, files, license_ref)
    others: list[dict[str, Any]] = [*_format_entities(files)]
    if license_entity is not None:
        others.append(license_entity)
    if "publisher" not in root and site.organisation:
        publisher = organisation_entity(site.organisation)
        root["publisher"] = {"@id": publisher["@id"]}
        others.append(publisher)
    instruments = [{"@id": e["@id"]} for e in extras if e.get("@type") == "IndividualProduct"]
    others += _provenance(files, instruments)
    others += [e for e in extras if e["@id"] not in {o["@id"] for o in others}]
    descriptor = {
        "@id": CRATE_NAME,
        "@type": "CreativeWork",
        "conformsTo": {"@id": RO_CRATE_SPEC},
        "about": {"@id": "./"},
    }
    return {"@context": RO_CRATE_CONTEXT, "@graph": [descriptor, root, *files, *others]}


def _root_dataset(
    root_name: str, session: str, files: list[dict[str, Any]], license_ref: dict[str, str]
) -> dict[str, Any]:
    published = max((str(e["dateModified"]) for e in files), default="1970-01-01T00:00:00+00:00")
    root: dict[str, Any] = {
        "@id": "./",
        "@type": "Dataset",
        "name": display_name(session),
        "description": (
            f"Instrument session “{display_name(session)}” from drop folder “{display_name(root_name)}”: "
            f"{len(files)} file(s), each with a SHA-256 checksum, described by {AGENT_NAME}."
        ),
        "identifier": session_identifier(root_name, session),
        "datePublished": published,
        "license": license_ref,
        "hasPart": [{"@id": e["@id"]} for e in files],
        "mentions": [{"@id": INGEST_ACTION_ID}],
    }
    root.update(_gathered(files))
    return root


def _provenance(files: list[dict[str, Any]], instruments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This software, and the action by which the instruments and it made the files and the crate."""
    return [
        {
            "@id": AGENT_ENTITY_ID,
            "@type": "SoftwareApplication",
            "name": AGENT_NAME,
            "version": __version__,
            "url": AGENT_URL,
        },
        {
            "@id": INGEST_ACTION_ID,
            "@type": "CreateAction",
            "name": f"Data acquired and described: checksums and metadata recorded by {AGENT_NAME}",
            "agent": {"@id": AGENT_ENTITY_ID},
            "instrument": instruments or [{"@id": AGENT_ENTITY_ID}],
            "object": [{"@id": e["@id"]} for e in files],
            "result": {"@id": CRATE_NAME},
            **_span(files),
        },
    ]


def _gathered(files: list[dict[str, Any]]) -> dict[str, Any]:
    """What the root dataset takes from its files: every creator, keyword and publisher."""
    out: dict[str, Any] = {}
    creators = sorted({ref["@id"] for f in files for ref in f.get("creator", [])})
    if creators:
        out["creator"] = [{"@id": c} for c in creators]
    keywords = sorted({k.strip() for f in files for k in str(f.get("keywords", "")).split(",") if k.strip()})
    if keywords:
        out["keywords"] = ", ".join(keywords)
    publishers = sorted({f["publisher"]["@id"] for f in files if "publisher" in f})
    if publishers:
        out["publisher"] = [{"@id": p} for p in publishers] if len(publishers) > 1 else {"@id": publishers[0]}
    return out


def _span(files: list[dict[str, Any]]) -> dict[str, str]:
    """Start and end of the session's data: first acquisition (or write), last write. No clock.

    Compared as instants: the same moment may be written with different offsets.
    """
    if not files:
        return {}
    starts = [str(f.get("dateCreated") or f["dateModified"]) for f in files]
    ends = [str(f["dateModified"]) for f in files]
    return {"startTime": min(starts, key=_instant), "endTime": max(ends, key=_instant)}


def _instant(iso: str) -> datetime:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _format_entities(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A contextual entity for every PRONOM format the files refer to."""
    ids = sorted(
        {
            ref["@id"]
            for entity in files
            for ref in (entity["encodingFormat"] if isinstance(entity["encodingFormat"], list) else [])
            if isinstance(ref, dict)
        }
    )
    return [
        {"@id": i, "@type": "WebPage", "name": f"PRONOM {i.rsplit('/', 2)[-2]}/{i.rsplit('/', 1)[-1]}"}
        for i in ids
    ]


def _license(files: list[dict[str, Any]], site: SiteSettings) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The session's license: the one every file's rule names, else the site's, else none chosen.

    The entity of a license the files name is among the files' own entities already.
    """
    named = {f["license"]["@id"] for f in files if "license" in f}
    if files and len(named) == 1 and all("license" in f for f in files):
        return {"@id": named.pop()}, None
    if site.license:
        return {"@id": site.license}, {"@id": site.license, "@type": "CreativeWork", "name": site.license}
    # Choosing a license is a legal act for the lab, not for us; say plainly that none was chosen.
    return {"@id": NO_LICENSE_ID}, {
        "@id": NO_LICENSE_ID,
        "@type": "CreativeWork",
        "name": "No license chosen yet",
        "description": "The site has not set site.license in the fair-agent configuration.",
    }
