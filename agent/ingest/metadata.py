"""What the agent says about one ingested file: its ``<file>.fair.json`` sidecar and crate entities.

Pure functions: values in, values out. The sidecar is a small JSON-LD document using schema.org
terms as RO-Crate uses them; the agent's own terms live in the RO-Crate ad-hoc namespace for this
project (https://w3id.org/ro/terms/fair-agent#).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from .. import AGENT_ENTITY_ID, AGENT_NAME, AGENT_URL, __version__
from ..core.config import SiteSettings
from ..core.naming import display_name, relative_id
from ..core.records import EXTRACTION_FAILURE, FileRecord
from ..core.units import ucum_code
from .entities import enrichment_entities, organisation_entities
from .licenses import license_entity

RO_CRATE_CONTEXT = "https://w3id.org/ro/crate/1.2/context"
TERMS_NAMESPACE = AGENT_URL + "#"

SIDECAR_CONTEXT: list[Any] = [
    RO_CRATE_CONTEXT,
    {
        "fa": TERMS_NAMESPACE,
        "session": "fa:session",
        "batchId": "fa:batchId",
        "sequence": "fa:sequence",
        "fileVersion": "fa:fileVersion",
        "datasetType": "fa:datasetType",
        "metadata": {"@id": "fa:metadata", "@type": "@json"},
        "dataset": {"@id": "fa:dataset", "@type": "@json"},
        "validation": {"@id": "fa:validation", "@type": "@json"},
        "drift": {"@id": "fa:drift", "@type": "@json"},
        "derived": {"@id": "fa:derived", "@type": "@json"},
        "warnings": "fa:warnings",
        "generatedBy": "fa:generatedBy",
    },
]

PRONOM_URL = "https://www.nationalarchives.gov.uk/PRONOM/"
#: A File entity's validation and drift status, for the session's preview page; never in the crate.
STATUS_KEY = "_status"


#: Within this many seconds of 1970 (1833 to 2106), ``mtime_ns / 1e9`` lands in the right second.
_FLOAT_SECOND_EXACT = 2**32


def iso_time(mtime_ns: int) -> str:
    seconds, rest = divmod(mtime_ns, 1_000_000_000)
    if rest < 999_990_000 and -_FLOAT_SECOND_EXACT < seconds < _FLOAT_SECOND_EXACT:
        # The files of a burst share their second: its text is made once (1.6 µs a file).
        return _iso_second(seconds)
    # Within 10 µs of the next second the float below may round up to it (datetime rounds to
    # microseconds), and further from 1970 it may miss a whole second by a microsecond: there
    # the text stays what it always was.
    return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=256)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


def file_properties(record: FileRecord) -> dict[str, Any]:
    """What the sidecar and the crate's File entity both say about the file (but its @id, which
    is relative to where each stands). Work for every file: made once, given to both."""
    return {
        "@type": "File",
        "name": display_name(record.name),
        "contentSize": str(record.stat.size),
        "encodingFormat": record.encoding_format,
        "sha256": record.sha256,
        "dateModified": iso_time(record.stat.mtime_ns),
        **acquisition_properties(record.acquisition),
        **schema_properties(record.metadata),
    }


def acquisition_properties(acquisition: dict[str, str]) -> dict[str, Any]:
    """When the data was measured: ``dateCreated``, and the span as an ISO 8601 interval.

    Only a time the instrument recorded counts; when the file was copied is its ``dateModified``.
    """
    if "start" not in acquisition:
        return {}
    if "end" not in acquisition:
        return {"dateCreated": acquisition["start"]}
    return {
        "dateCreated": acquisition["start"],
        "temporalCoverage": f"{acquisition['start']}/{acquisition['end']}",
    }


def schema_properties(metadata: dict[str, Any]) -> dict[str, Any]:
    """schema.org terms for what an extractor found, where schema.org has a term for it."""
    out: dict[str, Any] = {"description": file_description(metadata)}
    variables = measured_variables(metadata)
    if variables:
        out["variableMeasured"] = variables
    return out


def file_description(metadata: dict[str, Any]) -> str:
    """What the file is, in a sentence: its extractor's description, else its format and title."""
    described = metadata.get("description")
    if isinstance(described, str) and described.strip():
        return described.strip()
    found = metadata.get("format", {})
    kind = found.get("name") or found.get("format") or found.get("mediaType") or "unknown format"
    title = metadata.get("title") or metadata.get("name")
    sentence = f"{kind} file" + (f": {title}" if isinstance(title, str) and title.strip() else "")
    failure = metadata.get(EXTRACTION_FAILURE)
    if isinstance(failure, dict):
        sentence += f" (its {failure.get('extractor')} metadata could not be read)"
    return sentence


def measured_variables(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """A table's columns as schema.org PropertyValues (name, unit, range), at most 200."""
    variables = []
    for column in metadata.get("columns", [])[:200]:
        if not isinstance(column, dict) or column.get("type") == "empty":
            continue
        variable: dict[str, Any] = {"@type": "PropertyValue", "name": str(column.get("name"))}
        variable.update(unit_properties(column.get("unit")))
        if "min" in column and "max" in column:
            variable["minValue"], variable["maxValue"] = column["min"], column["max"]
        variables.append(variable)
    return variables


def unit_properties(unit: Any) -> dict[str, str]:
    """A unit as schema.org says it: ``unitText`` as written, ``unitCode`` in UCUM where it has one."""
    if not isinstance(unit, str) or not unit:
        return {}
    code = ucum_code(unit)
    return {"unitText": unit, "unitCode": code} if code else {"unitText": unit}


def derived_entities(record: FileRecord, raw_id: str) -> list[dict[str, Any]]:
    """The derived table as the crate lists it: a File based on the raw file, the agent's action
    that made it (with the rule as its object beside the raw file), the rule, and its variables."""
    derived = record.derived
    folder = raw_id.rpartition("/")[0]
    table_id = (folder + "/" if folder else "") + relative_id(derived["name"])
    rule_id = "#rule-" + relative_id(str(derived.get("rule", "unnamed")))
    variables = [
        {
            "@id": f"#{table_id}-variable-{n}",
            "@type": "PropertyValue",
            "name": str(column["name"]),
            **unit_properties(column.get("unit")),
            **(
                {"description": f"imputed values are marked in column {column['imputed']['mask']}"}
                if "imputed" in column
                else {}
            ),
        }
        for n, column in enumerate(derived.get("columns", [])[:200], start=1)
    ]
    table = {
        "@id": table_id,
        "@type": "File",
        "name": display_name(derived["name"]),
        "description": (
            f"Analysis-ready table derived from {display_name(record.name)} by the rule "
            f"{derived.get('rule')!r}: {derived.get('rows', 0):,} rows; types coerced, units converted "
            "and gaps handled as the rule says, each imputed value marked in a mask column."
        ),
        "contentSize": str(derived["contentSize"]),
        "encodingFormat": derived["encodingFormat"],
        "sha256": derived["sha256"],
        "isBasedOn": {"@id": raw_id},
    }
    if variables:
        table["variableMeasured"] = [{"@id": v["@id"]} for v in variables]
    action = {
        "@id": f"#derive-{table_id}",
        "@type": "CreateAction",
        "name": f"Derived {display_name(derived['name'])} from {display_name(record.name)}",
        "agent": {"@id": AGENT_ENTITY_ID},
        "instrument": {"@id": AGENT_ENTITY_ID},
        "object": [{"@id": raw_id}, {"@id": rule_id}],
        "result": {"@id": table_id},
    }
    rule = {
        "@id": rule_id,
        "@type": "CreativeWork",
        "name": f"{AGENT_NAME} rule {derived.get('rule')!r}",
        "description": "The rule whose [transform] table says how the derived tables are made.",
    }
    return [table, *variables, action, rule]


def crate_entities(
    record: FileRecord, session_is_folder: bool, properties: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The File entity of the session crate, then the contextual entities only it refers to.

    Its @id is relative to the session folder. A PRONOM id, where known, joins the media type in
    encodingFormat, as RO-Crate recommends. A crate's graph is flat, so the variables it measured
    become PropertyValue entities of their own, referred to by @id.
    """
    in_session = record.relpath.removeprefix(record.session + "/") if session_is_folder else record.name
    entity = {"@id": relative_id(in_session), **(properties or file_properties(record))}
    pronom = record.metadata.get("format", {}).get("pronom")
    if pronom:
        entity["encodingFormat"] = [record.encoding_format, {"@id": PRONOM_URL + pronom}]
    variables = entity.pop("variableMeasured", [])
    contextual = [{"@id": f"#{entity['@id']}-variable-{n}", **v} for n, v in enumerate(variables, start=1)]
    if contextual:
        entity["variableMeasured"] = [{"@id": v["@id"]} for v in contextual]
    if record.enrichment is not None:
        references, entities = enrichment_entities(record.enrichment)
        entity.update(references)
        contextual += entities
    if record.derived.get("name"):
        derived = derived_entities(record, entity["@id"])
        if "license" in entity:  # the derived table is the raw data's, under the same terms
            derived[0]["license"] = entity["license"]
        contextual += derived
    if record.drift.get("status") == "drifted":
        entity["description"] += f". {_drift_sentence(record.drift)}"
    entity[STATUS_KEY] = {
        "datasetType": record.dataset_type,
        "validation": record.validation.get("status"),
        "drift": record.drift.get("status"),
        "warnings": list(record.warnings[:5]),
    }
    return [entity, *contextual]


def _drift_sentence(drift: dict[str, Any]) -> str:
    parts = [f"{k}: {', '.join(drift[k])}" for k in ("new", "missing") if drift.get(k)]
    parts += (
        [f"retyped: {', '.join(r['key'] for r in drift.get('retyped', []))}"] if drift.get("retyped") else []
    )
    return f"Metadata drift from the baseline of dataset type {drift.get('datasetType')!r}: " + "; ".join(
        parts
    )


def _nest(value: Any, by_id: dict[str, dict[str, Any]]) -> Any:
    """References replaced by the entities they name: the sidecar nests what a crate keeps flat."""
    if isinstance(value, dict) and set(value) == {"@id"} and value["@id"] in by_id:
        return _nest(by_id[value["@id"]], by_id)
    if isinstance(value, dict):
        return {k: _nest(v, by_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_nest(v, by_id) for v in value]
    return value


@lru_cache(maxsize=8)
def _site_entities(site: SiteSettings) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The site's licence and publisher as a sidecar nests them: the same for every file, so made
    once (the documents that hold them are only serialised, never changed)."""
    license_ = license_entity(site.license) if site.license else None
    publisher = site.publishing_organisation
    if publisher is None:
        return license_, None
    organisation = organisation_entities(publisher)
    return license_, _nest(organisation[0], {e["@id"]: e for e in organisation})


def build_sidecar(
    record: FileRecord, site: SiteSettings | None = None, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``<file>.fair.json`` document; its @id is relative to the folder it sits in.

    What the file's rule adds comes first; the site's license and organisation fill in where the
    rule names none, so that every sidecar says who publishes the file and under which terms.
    """
    enrichment: dict[str, Any] = {}
    if record.enrichment is not None:
        references, entities = enrichment_entities(record.enrichment)
        by_id = {e["@id"]: e for e in entities}
        enrichment = _nest(references, by_id)
        instruments = [e for e in entities if e["@type"] == "IndividualProduct"]
        if instruments:
            enrichment["instrument"] = _nest(instruments[0], by_id)
    if site is not None:
        license_, publisher = _site_entities(site)
        if license_ is not None and "license" not in enrichment:
            enrichment["license"] = license_
        if publisher is not None and "publisher" not in enrichment:
            enrichment["publisher"] = publisher
    return {
        "@context": SIDECAR_CONTEXT,
        "@id": relative_id(record.name),
        **(properties or file_properties(record)),
        **enrichment,
        "session": display_name(record.session),
        "batchId": record.batch_id,
        "sequence": record.sequence,
        "fileVersion": record.version,
        "datasetType": record.dataset_type,
        "dataset": record.dataset,
        "metadata": record.metadata,
        "validation": record.validation,
        "drift": record.drift,
        **({"derived": record.derived} if record.derived else {}),
        "warnings": list(record.warnings),
        "generatedBy": {"@type": "SoftwareApplication", "name": AGENT_NAME, "version": __version__},
    }
