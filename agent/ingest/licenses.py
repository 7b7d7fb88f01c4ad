"""Licences labs choose for data, by the URLs they name them with: a name and a description each.

RO-Crate recommends a licence entity with both, so that a reader learns the terms without
following the link. A URL not listed here still gets an entity, which says where the terms are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class License:
    spdx: str
    name: str
    description: str


_CC = "https://creativecommons.org/licenses/"
_KNOWN: dict[str, License] = {
    _CC + "by/4.0/": License(
        "CC-BY-4.0",
        "Creative Commons Attribution 4.0 International",
        "Anyone may share and adapt the data for any purpose, including commercially, if they give "
        "appropriate credit, link to the licence and indicate if changes were made.",
    ),
    _CC + "by-sa/4.0/": License(
        "CC-BY-SA-4.0",
        "Creative Commons Attribution-ShareAlike 4.0 International",
        "Anyone may share and adapt the data for any purpose if they give appropriate credit and "
        "distribute their contributions under the same licence.",
    ),
    _CC + "by-nc/4.0/": License(
        "CC-BY-NC-4.0",
        "Creative Commons Attribution-NonCommercial 4.0 International",
        "Anyone may share and adapt the data for non-commercial purposes if they give appropriate credit.",
    ),
    "https://creativecommons.org/publicdomain/zero/1.0/": License(
        "CC0-1.0",
        "Creative Commons Zero v1.0 Universal",
        "The data is dedicated to the public domain: anyone may use it for any purpose without "
        "asking permission or giving credit.",
    ),
    "https://opendatacommons.org/licenses/by/1-0/": License(
        "ODC-By-1.0",
        "Open Data Commons Attribution License v1.0",
        "Anyone may share, create works from and adapt the database if they attribute it as the "
        "licence requires.",
    ),
    "https://opendatacommons.org/licenses/odbl/1-0/": License(
        "ODbL-1.0",
        "Open Data Commons Open Database License v1.0",
        "Anyone may share, create works from and adapt the database if they attribute it, share "
        "adapted databases under the same licence and keep them open.",
    ),
    "https://opendatacommons.org/licenses/pddl/1-0/": License(
        "PDDL-1.0",
        "Open Data Commons Public Domain Dedication and License v1.0",
        "The database is placed in the public domain: anyone may use it for any purpose.",
    ),
    "https://opensource.org/licenses/MIT": License(
        "MIT",
        "MIT License",
        "Anyone may use, copy, modify and distribute the work if the copyright and permission "
        "notice is kept; it comes without warranty.",
    ),
    "https://www.apache.org/licenses/LICENSE-2.0": License(
        "Apache-2.0",
        "Apache License 2.0",
        "Anyone may use, modify and distribute the work under the licence's conditions (notices "
        "kept, changes stated); it grants a patent licence and comes without warranty.",
    ),
}
_BY_SPDX = {lic.spdx.lower(): lic for lic in _KNOWN.values()}


def known_license(url: str) -> License | None:
    """The licence a URL names: its canonical URL above, with or without "www", "http" or the last
    slash, or an SPDX licence URL (https://spdx.org/licenses/CC-BY-4.0)."""
    key = _normal(url)
    for known, license_ in _KNOWN.items():
        if _normal(known) == key:
            return license_
    if key.startswith("spdx.org/licenses/"):
        return _BY_SPDX.get(key.removeprefix("spdx.org/licenses/").removesuffix(".html").lower())
    return None


def license_entity(url: str) -> dict[str, Any]:
    """The crate's contextual entity for a licence: a CreativeWork with a name and a description."""
    license_ = known_license(url)
    if license_ is None:
        return {
            "@id": url,
            "@type": "CreativeWork",
            "name": url,
            "description": f"The licence published at {url}.",
        }
    return {
        "@id": url,
        "@type": "CreativeWork",
        "name": license_.name,
        "alternateName": license_.spdx,
        "identifier": f"https://spdx.org/licenses/{license_.spdx}",
        "description": license_.description,
    }


def _normal(url: str) -> str:
    text = url.strip().lower().removeprefix("https://").removeprefix("http://").removeprefix("www.")
    return text.rstrip("/")
