"""What a rule adds to every file it claims: licence, keywords, the instrument, publisher, creators.

Static facts a lab declares once (in ``rules/*.toml``), carried by every file record into its
sidecar and its session's crate. People are identified by ORCID, organisations by ROR, where known.
"""

from __future__ import annotations

from pydantic import Field

from .parties import URL_PATTERN, Contact, Organisation, Person
from .strict import Strict

__all__ = ["Contact", "Enrichment", "Instrument", "Organisation", "Person"]


class Instrument(Strict):
    name: str
    #: The maker, by name, or as an organisation (name, ror, url, contact).
    manufacturer: str | Organisation | None = None
    model: str | None = None
    serial_number: str | None = None
    #: A persistent identifier of the instrument (e.g. a PIDINST handle URL), if it has one.
    identifier: str | None = None


class Enrichment(Strict):
    """Static facts added to every file the rule matches."""

    license: str | None = Field(default=None, pattern=URL_PATTERN)
    keywords: tuple[str, ...] = ()
    instrument: Instrument | None = None
    publisher: Organisation | None = None
    creator: tuple[Person, ...] = ()
