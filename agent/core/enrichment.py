"""What a rule adds to every file it claims: licence, keywords, the instrument, publisher, creators.

Static facts a lab declares once (in ``rules/*.toml``), carried by every file record into its
sidecar and its session's crate. People are identified by ORCID, organisations by ROR, where known.
"""

from __future__ import annotations

from pydantic import Field

from .config import Strict

ORCID_PATTERN = r"^https://orcid\.org/\d{4}-\d{4}-\d{4}-\d{3}[\dX]$"
ROR_PATTERN = r"^https://ror\.org/0[a-z0-9]{6}\d{2}$"


class Instrument(Strict):
    name: str
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    #: A persistent identifier of the instrument (e.g. a PIDINST handle URL), if it has one.
    identifier: str | None = None


class Person(Strict):
    name: str
    orcid: str | None = Field(default=None, pattern=ORCID_PATTERN)


class Organisation(Strict):
    name: str
    ror: str | None = Field(default=None, pattern=ROR_PATTERN)


class Enrichment(Strict):
    """Static facts added to every file the rule matches."""

    license: str | None = Field(default=None, pattern=r"^https?://\S+$")
    keywords: tuple[str, ...] = ()
    instrument: Instrument | None = None
    publisher: Organisation | None = None
    creator: tuple[Person, ...] = ()
