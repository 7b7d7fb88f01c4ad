"""The contextual entities a lab's declarations become: people, organisations, contact points,
licences and instruments, each with the @id RO-Crate recommends (ORCID, ROR) where one is known.

Each function returns the entity first, then the entities it refers to, so that a flat graph can
hold them all.
"""

from __future__ import annotations

from typing import Any

from ..core.enrichment import Enrichment, Instrument
from ..core.parties import Contact, Organisation, Person
from .licenses import license_entity

Entity = dict[str, Any]


def enrichment_entities(enrichment: Enrichment) -> tuple[Entity, list[Entity]]:
    """A file's references to what its rule adds, and the entities referred to.

    The instrument is not a property of a file: the crate links it through its CreateAction.
    """
    refs: Entity = {}
    entities: list[Entity] = []
    if enrichment.license:
        refs["license"] = {"@id": enrichment.license}
        entities.append(license_entity(enrichment.license))
    if enrichment.keywords:
        refs["keywords"] = ", ".join(enrichment.keywords)
    if enrichment.creator:
        people = [person_entity(p) for p in enrichment.creator]
        refs["creator"] = [{"@id": p["@id"]} for p in people]
        entities += people
    if enrichment.publisher:
        publisher = organisation_entities(enrichment.publisher)
        refs["publisher"] = {"@id": publisher[0]["@id"]}
        entities += publisher
    if enrichment.instrument:
        entities += instrument_entities(enrichment.instrument)
    return refs, entities


def person_entity(person: Person) -> Entity:
    return {"@id": person.orcid or f"#person-{slug(person.name)}", "@type": "Person", "name": person.name}


def organisation_entities(org: Organisation) -> list[Entity]:
    """An Organization (its ROR as @id where known) and its ContactPoint."""
    entity: Entity = {"@id": org.ror or f"#organization-{slug(org.name)}", "@type": "Organization"}
    entity["name"] = org.name
    if org.url:
        entity["url"] = org.url
    if org.contact is None:
        return [entity]
    contact = contact_entity(org.contact, org.name)
    entity["contactPoint"] = {"@id": contact["@id"]}
    return [entity, contact]


def contact_entity(contact: Contact, of: str) -> Entity:
    """A ContactPoint, identified by its mailbox (or page) as RO-Crate's examples do."""
    entity: Entity = {
        "@id": f"mailto:{contact.email}" if contact.email else str(contact.url),
        "@type": "ContactPoint",
        "name": contact.name or f"Contact for {of}",
    }
    if contact.email:
        entity["email"] = contact.email
    if contact.url:
        entity["url"] = contact.url
    return entity


def instrument_entities(instrument: Instrument) -> list[Entity]:
    """The instrument as a schema.org IndividualProduct, and its manufacturer.

    A maker known only by name stays a name (schema.org accepts text where an Organization is
    expected): an entity with a made-up local @id would identify nothing more than the name does.
    """
    entity: Entity = {
        "@id": instrument.identifier or f"#instrument-{slug(instrument.name, instrument.serial_number)}",
        "@type": "IndividualProduct",
        "name": instrument.name,
    }
    if instrument.model:
        entity["model"] = instrument.model
    if instrument.serial_number:
        entity["serialNumber"] = instrument.serial_number
    maker = instrument.manufacturer
    if isinstance(maker, str):
        entity["manufacturer"] = maker
        return [entity]
    if maker is None:
        return [entity]
    makers = organisation_entities(maker)
    entity["manufacturer"] = {"@id": makers[0]["@id"]}
    return [entity, *makers]


def slug(*parts: str | None) -> str:
    text = "-".join(p for p in parts if p)
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "unnamed"
