"""Who is named in the metadata: people, organisations and whom to contact, as a lab declares them.

People are identified by ORCID, organisations by ROR, where known: RO-Crate recommends both as
@ids, and a bare name is all a reader can otherwise go on.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .strict import Strict

ORCID_PATTERN = r"^https://orcid\.org/\d{4}-\d{4}-\d{4}-\d{3}[\dX]$"
ROR_PATTERN = r"^https://ror\.org/0[a-z0-9]{6}\d{2}$"
URL_PATTERN = r"^https?://\S+$"


class Contact(Strict):
    """A point of contact (schema.org ContactPoint): a team's mailbox or a support page."""

    name: str | None = None
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    url: str | None = Field(default=None, pattern=URL_PATTERN)

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if self.email is None and self.url is None:
            raise ValueError("a contact needs an 'email' or a 'url' to be reached by")
        return self


class Organisation(Strict):
    name: str
    ror: str | None = Field(default=None, pattern=ROR_PATTERN)
    url: str | None = Field(default=None, pattern=URL_PATTERN)
    contact: Contact | None = None

    def missing(self) -> list[str]:
        """What RO-Crate recommends an organisation to have that this one lacks."""
        return [key for key in ("ror", "url", "contact") if getattr(self, key) is None]


class Person(Strict):
    name: str
    orcid: str | None = Field(default=None, pattern=ORCID_PATTERN)
