"""What a rule set and the site settings leave out that RO-Crate recommends: not errors (the
agent works without them), but each keeps the crates below the validator's RECOMMENDED level."""

from __future__ import annotations

from ..core.config import SiteSettings
from ..core.parties import Organisation
from .ruleset import Rule

_WHAT = {
    "ror": "a ROR id (ror)",
    "url": "a web site (url)",
    "contact": "a contact ([...contact] email or url)",
}


def quality_advice(rules: list[Rule], site: SiteSettings) -> list[str]:
    """One sentence per gap, naming where to fill it in."""
    advice = _site_advice(site)
    for rule in rules:
        enrich = rule.spec.enrich
        where = f"rule {rule.name!r} ({rule.source})"
        if enrich.publisher is not None:
            advice += _organisation_advice(enrich.publisher, f"{where}: its publisher")
        maker = enrich.instrument.manufacturer if enrich.instrument else None
        if isinstance(maker, str):
            advice.append(
                f"{where}: the instrument's manufacturer {maker!r} is a name only, so crates give it as "
                "text; make it a table ([enrich.instrument.manufacturer] with name, ror, url) to "
                "identify it"
            )
        elif maker is not None:
            advice += _organisation_advice(maker, f"{where}: the instrument's manufacturer")
        advice += [
            f"{where}: creator {person.name!r} has no ORCID (orcid)"
            for person in enrich.creator
            if not person.orcid
        ]
    return advice


def _site_advice(site: SiteSettings) -> list[str]:
    advice = []
    if site.license is None:
        advice.append("site.license is not set: crates say that no licence was chosen")
    publisher = site.publishing_organisation
    if publisher is None:
        advice.append("neither [site.publisher] nor site.organisation is set: crates have no publisher")
    else:
        advice += _organisation_advice(publisher, "the site's publisher ([site.publisher], [site.contact])")
    return advice


def _organisation_advice(org: Organisation, what: str) -> list[str]:
    missing = org.missing()
    if not missing:
        return []
    return [f"{what} {org.name!r} has no " + ", no ".join(_WHAT[key] for key in missing)]
