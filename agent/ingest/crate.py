"""The session folder's ``ro-crate-metadata.json``: an attached RO-Crate 1.2. No I/O.

The crate must come out byte-identical when a batch is redone after a crash, so nothing in it
depends on the clock: ``datePublished`` is the newest ``dateModified`` of its files.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from .. import AGENT_ENTITY_ID, AGENT_NAME, AGENT_URL, __version__
from ..core import jsontext
from ..core.config import SiteSettings
from ..core.naming import CRATE_NAME, display_name, relative_id
from ..extractors.generic import PRONOM_NAMES
from .entities import organisation_entities
from .licenses import license_entity
from .metadata import PRONOM_URL, RO_CRATE_CONTEXT, STATUS_KEY
from .preview import render_preview

RO_CRATE_SPEC = "https://w3id.org/ro/crate/1.2"
INGEST_ACTION_ID = "#fair-agent-ingest"
NO_LICENSE_ID = "#license-not-chosen"
IDENTIFIER_ID = "#session-identifier"
#: RFC 9562, Universally Unique IDentifiers: what a urn:uuid identifier is.
UUID_SPEC = "https://www.rfc-editor.org/rfc/rfc9562"
UNKNOWN_TIME = (
    "When the data was acquired is unknown: none of the session's files records it. Each file's "
    "dateModified is when it was last written, not when it was measured."
)
#: Contextual entities serialised together (bounded: a session of 100,000 tables has 400,000).
ENTITIES_AT_ONCE = 1000
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
    value = jsontext.loads(stored)
    return value if isinstance(value, list) else [value]


class SessionCrate:
    """The RO-Crate of one session folder, gathered one file at a time and written in order.

    ``add`` takes each file's entities: its File entity, then the contextual entities it refers to
    (the variables a table measured, and what rules added: instruments, people, organisations,
    licenses). The root dataset gathers the files' creators, keywords and (when all agree) license;
    the ingest action links the lab's instruments, this software, the files and the metadata it made.

    Memory is a line of text per file, not its entities as objects: a session of 100,000 files
    costs tens of megabytes. The text is what ``json.dumps(crate, indent=2)`` would print.
    """

    def __init__(self, root_name: str, session: str, site: SiteSettings) -> None:
        self.root_name, self.session, self.site = root_name, session, site
        #: (@id, the File entity as it stands in the crate's text but for its license, the license,
        #: what the preview says of its validation and drift)
        self._files: list[tuple[str, str, str | None, dict[str, Any]]] = []
        self._extras: dict[str, dict[str, Any]] = {}
        self._creators: set[str] = set()
        self._keywords: set[str] = set()
        self._publishers: set[str] = set()
        self._formats: set[str] = set()
        self._licenses: set[str] = set()
        self._unlicensed = 0
        self._published: str | None = None
        #: (instant, @id, text) of the first start and the last end; ties go to the first @id.
        self._start: tuple[datetime, str, str] | None = None
        self._end: tuple[datetime, str, str] | None = None

    def add(self, group: list[dict[str, Any]]) -> None:
        entity, contextual = group[0], group[1:]
        file_id = str(entity["@id"])
        # A file's license is written only where it differs from the session's (known at the end):
        # RO-Crate's data entities inherit the root's, and repeating it is redundant.
        license_id = entity["license"]["@id"] if "license" in entity else None
        text = _indented({k: v for k, v in entity.items() if k not in ("license", STATUS_KEY)})
        self._files.append((file_id, text, license_id, entity.get(STATUS_KEY, {})))
        for extra in contextual:
            if extra.get("@type") == "File":  # a table derived from the file: a part of its own
                self.add([extra])
            else:
                self._extras[str(extra["@id"])] = extra
        self._creators.update(ref["@id"] for ref in entity.get("creator", []))
        self._keywords.update(k.strip() for k in str(entity.get("keywords", "")).split(",") if k.strip())
        if "publisher" in entity:
            self._publishers.add(entity["publisher"]["@id"])
        formats = entity["encodingFormat"] if isinstance(entity.get("encodingFormat"), list) else []
        self._formats.update(ref["@id"] for ref in formats if isinstance(ref, dict))
        if license_id is not None:
            self._licenses.add(license_id)
        else:
            self._unlicensed += 1
        if "dateModified" in entity:  # a derived table has none: it is redone, and must not differ
            modified = str(entity["dateModified"])
            self._published = modified if self._published is None else max(self._published, modified)
        if "dateCreated" in entity:
            self._acquired(file_id, str(entity["dateCreated"]), str(entity.get("temporalCoverage", "")))

    def _acquired(self, file_id: str, start: str, coverage: str) -> None:
        """Widen the session's acquisition span by one file's."""
        end = coverage.partition("/")[2] or start
        first = (_instant(start), file_id, start)
        if self._start is None or first[:2] < self._start[:2]:
            self._start = first
        last = (_instant(end), file_id, end)
        if (
            self._end is None
            or last[0] > self._end[0]
            or (last[0] == self._end[0] and file_id < self._end[1])
        ):
            self._end = last

    def documents(self) -> tuple[list[str], list[str]]:
        """The crate's JSON text and its preview page, from one assembly of the graph."""
        root, others = self._assemble()
        return self._text(root, others), self._preview(root, others)

    def text(self) -> list[str]:
        """The crate's JSON text, in pieces (a file's entity is one piece)."""
        return self._text(*self._assemble())

    def _text(self, root: dict[str, Any], others: list[dict[str, Any]]) -> list[str]:
        descriptor = {
            "@id": CRATE_NAME,
            "@type": "CreativeWork",
            "conformsTo": {"@id": RO_CRATE_SPEC},
            "about": {"@id": "./"},
        }
        head = f'{{\n  "@context": {json.dumps(RO_CRATE_CONTEXT)},\n  "@graph": [\n'
        pieces = [head, _indented(descriptor), ",\n", _indented(root)]
        session_license = root["license"]["@id"]
        for _, text, license_id, _ in self._files:
            own = license_id not in (None, session_license)
            pieces += [",\n", _with_license(text, license_id) if own and license_id else text]
        for text in _indented_each(others):
            pieces += [",\n", text]
        pieces.append("\n  ]\n}\n")
        return pieces

    def _preview(self, root: dict[str, Any], others: list[dict[str, Any]]) -> list[str]:
        """The crate's ``ro-crate-preview.html``, in pieces (see preview)."""
        files = ((jsontext.loads(text), license_id, status) for _, text, license_id, status in self._files)
        return render_preview(root, files, len(self._files), {str(o["@id"]): o for o in others})

    def _assemble(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The root dataset and every entity that is not a file's, in the order they are written."""
        self._files.sort(key=lambda item: item[0])
        parts = [{"@id": file_id} for file_id, _, _, _ in self._files]
        license_ref, session_license = self._license()
        root = self._root(parts, license_ref)
        extras = [self._extras[i] for i in sorted(self._extras)]
        others: list[dict[str, Any]] = [_identifier_entity(self.root_name, self.session)]
        others += [_format_entity(i) for i in sorted(self._formats)]
        if session_license is not None:
            others.append(session_license)
        publisher = self.site.publishing_organisation
        if "publisher" not in root and publisher is not None:
            organisation = organisation_entities(publisher)
            root["publisher"] = {"@id": organisation[0]["@id"]}
            others += organisation
        instruments = [{"@id": e["@id"]} for e in extras if e.get("@type") == "IndividualProduct"]
        others += self._provenance(parts, instruments)
        listed = {o["@id"] for o in others}
        others += [e for e in extras if e["@id"] not in listed]
        return root, others

    def _root(self, parts: list[dict[str, Any]], license_ref: dict[str, str]) -> dict[str, Any]:
        root: dict[str, Any] = {
            "@id": "./",
            "@type": "Dataset",
            "name": display_name(self.session),
            "description": (
                f"Instrument session “{display_name(self.session)}” from drop folder "
                f"“{display_name(self.root_name)}”: {len(parts)} file(s), each with a SHA-256 checksum, "
                f"described by {AGENT_NAME}."
            ),
            "identifier": {"@id": IDENTIFIER_ID},
            "datePublished": self._published or "1970-01-01T00:00:00+00:00",
            "license": license_ref,
            "hasPart": parts,
            # The ingest action, and the actions that derived tables from files (each file's own).
            "mentions": [{"@id": INGEST_ACTION_ID}]
            + [{"@id": i} for i in sorted(self._extras) if self._extras[i].get("@type") == "CreateAction"],
        }
        # What the root dataset takes from its files: every creator, keyword and publisher.
        if self._creators:
            root["creator"] = [{"@id": c} for c in sorted(self._creators)]
        if self._keywords:
            root["keywords"] = ", ".join(sorted(self._keywords))
        if self._publishers:
            publishers = sorted(self._publishers)
            root["publisher"] = (
                [{"@id": p} for p in publishers] if len(publishers) > 1 else {"@id": publishers[0]}
            )
        return root

    def _provenance(
        self, parts: list[dict[str, Any]], instruments: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """This software, and the action by which the instruments and it made the files and the crate.

        The span is the session's acquisition, from the times its files record; no clock, and never
        when the files were copied. Where no file records one, the action says the time is unknown.
        """
        if self._start and self._end:
            span = {"startTime": self._start[2], "endTime": self._end[2]}
        else:
            span = {"description": UNKNOWN_TIME}
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
                "object": parts,
                "result": {"@id": CRATE_NAME},
                **span,
            },
        ]

    def _license(self) -> tuple[dict[str, str], dict[str, Any] | None]:
        """The session's license: the one every file's rule names, else the site's, else none chosen.

        The entity of a license the files name is among the files' own entities already.
        """
        if self._files and len(self._licenses) == 1 and not self._unlicensed:
            return {"@id": next(iter(self._licenses))}, None
        if self.site.license:
            return {"@id": self.site.license}, license_entity(self.site.license)
        # Choosing a license is a legal act for the lab, not for us; say plainly that none was chosen.
        return {"@id": NO_LICENSE_ID}, {
            "@id": NO_LICENSE_ID,
            "@type": "CreativeWork",
            "name": "No license chosen yet",
            "description": "The site has not set site.license in the fair-agent configuration.",
        }


def _indented(entity: dict[str, Any]) -> str:
    """An entity as it stands in the crate's @graph: two levels deep in json.dumps(indent=2).

    One value is written as itself, not as a list of one, as RO-Crate 1.2 recommends.
    """
    return "    " + jsontext.indented(_single_values(entity)).replace("\n", "\n    ")


def _single_values(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in entity.items()}


def _indented_each(entities: list[dict[str, Any]]) -> list[str]:
    """``[_indented(e) for e in entities]`` from one serialisation per ENTITIES_AT_ONCE: a crate's
    contextual entities are several to a file (a table's variables), and a call each cost more
    than the JSON.

    In the list's indented text each entity starts a line with two spaces and "{"; anything deeper
    is indented further, and a newline inside a string is escaped, so the text splits there.
    """
    texts: list[str] = []
    for start in range(0, len(entities), ENTITIES_AT_ONCE):
        chunk = [_single_values(e) for e in entities[start : start + ENTITIES_AT_ONCE]]
        first, *rest = jsontext.indented(chunk).removeprefix("[\n").removesuffix("\n]").split(",\n  {")
        texts += ["  " + piece.replace("\n", "\n  ") for piece in [first, *("  {" + r for r in rest)]]
    return texts


def _with_license(text: str, license_id: str) -> str:
    """A File entity's text with its own license, where it differs from the session's."""
    value = jsontext.indented({"@id": license_id}).replace("\n", "\n      ")
    return text.removesuffix("\n    }") + f',\n      "license": {value}\n    }}'


def _identifier_entity(root_name: str, session: str) -> dict[str, Any]:
    """The session's identifier as a PropertyValue (RO-Crate's Science-on-Schema.org approach)."""
    return {
        "@id": IDENTIFIER_ID,
        "@type": "PropertyValue",
        "name": f"{AGENT_NAME} session identifier",
        "description": "A UUID (version 5) of the drop folder's name and the session's path in it.",
        "propertyID": UUID_SPEC,
        "value": session_identifier(root_name, session),
    }


def _format_entity(pronom: str) -> dict[str, Any]:
    """The contextual entity of a PRONOM format the files refer to, typed as RO-Crate says."""
    code = pronom.removeprefix(PRONOM_URL)
    return {"@id": pronom, "@type": ["WebPage", "Standard"], "name": PRONOM_NAMES.get(code, f"PRONOM {code}")}


def _instant(iso: str) -> datetime:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
