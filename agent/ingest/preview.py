"""``ro-crate-preview.html``: the session's crate as a page a person reads in any browser, offline.

The RO-Crate convention for a human-readable view beside ``ro-crate-metadata.json``, which stays the
record. One self-contained HTML5 file: no script, no fetched style or font. Everything in it comes
from file names and file contents, which are hostile input, so every text is escaped and only
http(s), mailto and relative links become links. Large sessions list their first MAX_ROWS files.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .. import AGENT_NAME, __version__
from ..extractors.jsonld import refs
from ..fs.outputs import PREVIEW_HEAD

Entity = dict[str, Any]
#: Files listed on the page; a session of more says how many more the crate lists.
MAX_ROWS = 10_000

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .3em 1.2em; }
dt { font-weight: 600; color: #555; }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border-bottom: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
code { font-size: .85em; word-break: break-all; }
.ok { color: #1a7f37; } .bad { color: #b42318; } .warn { color: #9a6700; }
footer { margin-top: 2em; color: #666; font-size: .85em; }
"""


#: Where a browser leaves the page's own folder without a scheme: two slashes, either way round
#: (``//host/x``, ``\\host``: a file: page makes that a network share), after what it strips.
_OTHER_HOST = re.compile(r"[\x00-\x20]*[/\\]{2}")

#: A File entity (without its license), its own license, and what the pipeline said of it.
FileRow = tuple[Entity, str | None, dict[str, Any]]


def render_preview(
    root: Entity, files: Iterable[FileRow], count: int, others: dict[str, Entity]
) -> list[str]:
    """The page, in pieces: the session's facts, then one table row per file (up to MAX_ROWS).

    ``files`` gives each File entity (without its license), its own license where it has one, and
    what the pipeline said of it (validation, drift, warnings).
    """
    title = _text(root.get("name"))
    pieces = [
        PREVIEW_HEAD,  # marks the page as the agent's own (fs.outputs.is_agent_document)
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        f"<h1>{title}</h1>\n<p>{_text(root.get('description'))}</p>\n",
        _facts(root, others),
        f"<h2>Files ({count:,})</h2>\n<table>\n<thead><tr><th>File</th><th>Size</th><th>Format</th>"
        "<th>Measured</th><th>Last written</th><th>SHA-256</th><th>Checks</th><th>Description</th>"
        "</tr></thead>\n<tbody>\n",
    ]
    session_license = _id(root.get("license"))
    for listed, (entity, license_id, status) in enumerate(files):
        if listed == MAX_ROWS:
            break
        own = license_id if license_id != session_license else None
        pieces.append(_row(entity, own, status, others))
    pieces.append("</tbody>\n</table>\n")
    if count > MAX_ROWS:
        pieces.append(f"<p>… and {count - MAX_ROWS:,} more files, listed in ro-crate-metadata.json.</p>\n")
    pieces.append(
        f'<footer>A view of <a href="ro-crate-metadata.json">ro-crate-metadata.json</a> (RO-Crate 1.2), '
        f"which is the record. Written by {AGENT_NAME} {html.escape(__version__)}.</footer>\n"
        "</body>\n</html>\n"
    )
    return pieces


def _facts(root: Entity, others: dict[str, Entity]) -> str:
    action = next((e for e in others.values() if e.get("@type") == "CreateAction"), {})
    rows = [
        ("Identifier", _text(others.get(_id(root.get("identifier")), {}).get("value"))),
        ("Published", _text(root.get("datePublished"))),
        ("Acquired", _span(action)),
        ("Licence", _named_link(others.get(_id(root.get("license")), {"@id": _id(root.get("license"))}))),
        ("Publisher", _organisations(root.get("publisher"), others)),
        ("Creators", _list(root.get("creator"), others)),
        ("Keywords", _text(root.get("keywords"))),
        ("Instruments", _instruments(action.get("instrument"), others)),
    ]
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>\n" for label, value in rows if value)
    return f"<dl>\n{items}</dl>\n"


def _row(entity: Entity, license_id: str | None, status: dict[str, Any], others: dict[str, Entity]) -> str:
    """One file's row; ``license_id`` only where the file's licence is not the session's."""
    file_id = str(entity.get("@id", ""))
    name = _link(file_id, _text(entity.get("name") or file_id))
    formats = entity.get("encodingFormat")
    media = [f for f in refs(formats) if isinstance(f, str)]
    named = [_named_link(others.get(_id(f), {"@id": _id(f)})) for f in refs(formats) if isinstance(f, dict)]
    sha = _text(entity.get("sha256"))
    description = _text(entity.get("description"))
    if license_id:
        description += f"<br>Licence: {_named_link(others.get(license_id, {'@id': license_id}))}"
    warnings = status.get("warnings") or []
    if warnings:
        description += "".join(f'<br><span class="warn">⚠ {_text(w)}</span>' for w in warnings)
    return (
        f'<tr><td>{name}</td><td class="num">{_size(entity.get("contentSize"))}</td>'
        f"<td>{'<br>'.join(media + named)}</td>"
        f"<td>{_text(entity.get('temporalCoverage') or entity.get('dateCreated') or '')}</td>"
        f"<td>{_text(entity.get('dateModified'))}</td>"
        f'<td><code title="{sha}">{sha[:16]}…</code></td><td>{_checks(status)}</td>'
        f"<td>{description}</td></tr>\n"
    )


def _checks(status: dict[str, Any]) -> str:
    validation, drift = status.get("validation"), status.get("drift")
    parts = []
    if validation == "valid":
        parts.append(f'<span class="ok">valid</span> ({_text(status.get("datasetType"))})')
    elif validation:
        parts.append(f'<span class="bad">{_text(validation)}</span>')
    if drift == "drifted":
        parts.append('<span class="warn">drift</span>')
    elif drift and drift not in ("off", "not-checked"):
        parts.append(f"drift: {_text(drift)}")
    return "<br>".join(parts) or "—"


def _span(action: Entity) -> str:
    if "startTime" not in action:
        return "unknown: no file records when it was measured"
    start, end = _text(action["startTime"]), _text(action.get("endTime"))
    return start if end in ("", start) else f"{start} to {end}"


def _organisations(value: Any, others: dict[str, Entity]) -> str:
    shown = []
    for ref in refs(value):
        org = others.get(_id(ref), {"@id": _id(ref)})
        text = _named_link(org)
        if org.get("url"):
            text += f" ({_link(str(org['url']), _text(org['url']))})"
        contact = others.get(_id(org.get("contactPoint")), {})
        if contact.get("email"):
            text += f", contact: {_link('mailto:' + str(contact['email']), _text(contact['email']))}"
        elif contact.get("url"):
            text += f", contact: {_link(str(contact['url']), _text(contact.get('name') or contact['url']))}"
        shown.append(text)
    return "<br>".join(shown)


def _list(value: Any, others: dict[str, Entity]) -> str:
    return ", ".join(_named_link(others.get(_id(ref), {"@id": _id(ref)})) for ref in refs(value))


def _instruments(value: Any, others: dict[str, Entity]) -> str:
    shown = []
    for ref in refs(value):
        found = others.get(_id(ref), {})
        if found.get("@type") != "IndividualProduct":
            continue
        details = [f"model {_text(found['model'])}" if found.get("model") else ""]
        details.append(f"serial number {_text(found['serialNumber'])}" if found.get("serialNumber") else "")
        maker = found.get("manufacturer")
        if isinstance(maker, dict):
            details.append("made by " + _named_link(others.get(_id(maker), {"@id": _id(maker)})))
        elif maker:
            details.append(f"made by {_text(maker)}")
        described = ", ".join(d for d in details if d)
        shown.append(_text(found.get("name")) + (f" ({described})" if described else ""))
    return "<br>".join(shown)


def _named_link(entity: Entity) -> str:
    """An entity's name, linked to its @id where that is a web address."""
    entity_id = str(entity.get("@id", ""))
    label = _text(entity.get("name") or entity_id)
    return _link(entity_id, label) if entity_id and not entity_id.startswith("#") else label


def _link(target: str, label: str) -> str:
    """A link where the target is http(s), mailto or a path on the page's own host; otherwise
    (another scheme, another host, what is not a URL at all) the label alone."""
    try:
        # No colon, no scheme: a file's own relative link (every row has one) needs no parsing.
        scheme = urlsplit(target).scheme.lower() if ":" in target else ""
    except ValueError:  # "http://[x": not a URL
        return label
    within = not scheme and not target.startswith("#") and not _OTHER_HOST.match(target)
    if scheme in ("http", "https", "mailto") or within:
        return f'<a href="{html.escape(target, quote=True)}">{label}</a>'
    return label


def _size(value: Any) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    return ""


def _text(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _id(ref: Any) -> str:
    return str(ref.get("@id", "")) if isinstance(ref, dict) else str(ref or "")
