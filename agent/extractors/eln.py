"""ELN Consortium exports (``.eln``): a ZIP holding one folder with an RO-Crate, read in place.

Nothing is extracted to disk. The archive is refused (UnsafeArchiveError) before anything is read
if a member path is absolute or climbs out with ``..``, if it is encrypted, if it has more members
or more uncompressed bytes than the limits allow, or if a member's compression ratio marks a ZIP
bomb. Then ``ro-crate-metadata.json`` (RO-Crate 1.1 or 1.2; ``.jsonld`` in 1.0), read as JSON-LD
(jsonld.Graph: inline nodes, any order, any @context form), gives the exporting ELN, the
experiments and the files; every member for which the crate declares a sha256 is hashed and the
declaration checked (MD5s and garbage in that field exist in the wild): what does not hold becomes
a warning of the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from .base import Budget, ExtractionError, Metadata, Source, UnsafeArchiveError, acquisition_time, counted
from .jsonld import Graph, Node, context_urls, prop, raw, refs, types

MAX_MEMBERS = 100_000
MAX_UNCOMPRESSED = 50 << 30  # 50 GiB
MAX_RATIO = 200  # uncompressed / compressed, for members over RATIO_FLOOR
RATIO_FLOOR = 1 << 20
#: The same, for the archive as a whole: many members, each too small for the check above, that
#: together expand to gigabytes (45,000 x 1 MiB of zeros fit in 24 MB).
MAX_ARCHIVE_RATIO = 100
ARCHIVE_RATIO_FLOOR = 64 << 20
MAX_CRATE_BYTES = 64 << 20
MAX_LISTED = 200  # experiments and files listed in the sidecar; counts are always complete
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
#: The metadata descriptor's @id in RO-Crate 1.1-1.2, and in 1.0.
DESCRIPTOR_IDS = ("ro-crate-metadata.json", "ro-crate-metadata.jsonld")
#: "File" is RO-Crate's name for schema.org's MediaObject; some writers use the latter.
FILE_TYPES = frozenset({"File", "MediaObject"})


class ElnExtractor:
    name = "eln"
    crash_free = True

    def accepts(self, name: str, head: bytes) -> bool:
        return name.lower().endswith(".eln")

    def extract(self, source: Source, budget: Budget) -> Metadata:
        declared = declared_members(source.path)
        if declared > MAX_MEMBERS:
            # Refused before zipfile reads a central directory that large into memory.
            raise UnsafeArchiveError(
                f"{source.name!r} has {declared} members, more than the limit of {MAX_MEMBERS}"
            )
        try:
            archive = zipfile.ZipFile(source.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ExtractionError(f"{source.name!r} is not a readable ZIP archive: {exc}") from None
        with archive:
            members = check_archive(archive, source.name)
            crate_path = find_crate(members, source.name)
            crate = _load_crate(archive, members[crate_path], source.name)
            root = crate_path.rpartition("/")[0]
            graph = Graph(crate)
            result = describe(graph)
            result["rootFolder"] = root
            result["checksums"] = verify_checksums(archive, members, root, graph, budget)
            result["warnings"] = checksum_warnings(result["checksums"])
            signatures = sorted(m for m in members if m.endswith(".minisig"))
            sibling = source.folder / (source.name + ".minisig")
            result["signature"] = {
                "minisignInArchive": signatures,
                "minisignBeside": sibling.name if sibling.exists() else None,
                "present": bool(signatures) or sibling.exists(),
                "verified": False,  # the agent reports signatures; it holds no keys to check them
            }
            return result


def declared_members(path: Path) -> int:
    """The member count from the end-of-central-directory record (0 when none is found)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - (66 << 10)))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 12 > len(tail):
        return 0
    count = int.from_bytes(tail[at + 10 : at + 12], "little")
    zip64 = tail.rfind(b"PK\x06\x06")
    if count == 0xFFFF and zip64 >= 0 and zip64 + 40 <= len(tail):
        count = int.from_bytes(tail[zip64 + 32 : zip64 + 40], "little")
    return count


def normalise(name: str) -> str:
    """Member names as crates refer to them: eLabFTW writes ``folder//file``."""
    return re.sub(r"/{2,}", "/", name)


def check_archive(archive: zipfile.ZipFile, label: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by normalised name, once it is known to be safe to read."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UnsafeArchiveError(f"{label!r} has {len(infos)} members, more than the limit of {MAX_MEMBERS}")
    total = 0
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise UnsafeArchiveError(f"{label!r} has a member that would land outside its folder: {name!r}")
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(f"{label!r} has an encrypted member ({name!r}); it cannot be checked")
        total += info.file_size
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise UnsafeArchiveError(
                f"{label!r} looks like a ZIP bomb: {name!r} expands {ratio} times "
                f"({info.compress_size} -> {info.file_size} bytes)"
            )
        key = normalise(name)
        if key in members and not info.is_dir():
            # Two members with one name: readers disagree on which one counts (zipfile takes
            # the last, we would check the first), so the archive cannot be trusted.
            raise UnsafeArchiveError(f"{label!r} has two members named {key!r}")
        members.setdefault(key, info)
    if total > MAX_UNCOMPRESSED:
        raise UnsafeArchiveError(
            f"{label!r} expands to {total} bytes, more than the limit of {MAX_UNCOMPRESSED}"
        )
    compressed = sum(info.compress_size for info in infos)
    if total > ARCHIVE_RATIO_FLOOR and total > MAX_ARCHIVE_RATIO * max(compressed, 1):
        raise UnsafeArchiveError(
            f"{label!r} looks like a ZIP bomb: its {len(infos)} members expand "
            f"{total // max(compressed, 1)} times ({compressed} -> {total} bytes)"
        )
    return members


def find_crate(members: dict[str, zipfile.ZipInfo], label: str) -> str:
    candidates = [m for m in members if m.count("/") <= 1 and m.rsplit("/", 1)[-1] == DESCRIPTOR_IDS[0]]
    # RO-Crate 1.0 named it ro-crate-metadata.jsonld; taken only where no current one is.
    candidates = candidates or [
        m for m in members if m.count("/") <= 1 and m.rsplit("/", 1)[-1] == DESCRIPTOR_IDS[1]
    ]
    if not candidates:
        raise ExtractionError(
            f"{label!r} holds no ro-crate-metadata.json in its top folder: not an ELN export"
        )
    if len(candidates) > 1:
        raise ExtractionError(f"{label!r} holds several crates ({', '.join(sorted(candidates))})")
    return candidates[0]


def _load_crate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Any:
    if info.file_size > MAX_CRATE_BYTES:
        raise UnsafeArchiveError(
            f"{label!r} has a {info.file_size}-byte ro-crate-metadata.json; refusing to parse it"
        )
    try:
        with archive.open(info) as f:
            data = json.loads(f.read(MAX_CRATE_BYTES + 1))
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ExtractionError(f"{label!r}: its ro-crate-metadata.json cannot be read: {exc}") from None
    if not isinstance(data, dict | list):
        raise ExtractionError(f"{label!r}: its ro-crate-metadata.json is not a JSON-LD document")
    return data


def describe(graph: Graph) -> Metadata:
    """The exporting ELN, the experiments and the files of an ELN's crate. Pure."""

    def name_of(ref: Any) -> Any:
        node = graph.resolve(ref)
        if not node:
            return ref.get("@id") if isinstance(ref, dict) else ref
        full = " ".join(str(prop(node, k)) for k in ("givenName", "familyName") if prop(node, k))
        return prop(node, "name") or full or node.get("@id")

    descriptor, root_id = _descriptor(graph)
    root = graph.get(root_id)
    publisher = graph.resolve(prop(descriptor, "sdPublisher") or prop(root, "sdPublisher"))
    experiments, files = [], []
    for node_id, node in graph.nodes.items():
        kinds = types(node)
        if "Dataset" in kinds and node_id != root_id:
            experiments.append(_experiment(node, name_of))
        elif kinds & FILE_TYPES:
            files.append(_file(node_id, node))
    software = [
        {"name": prop(n, "name"), "version": prop(n, "version") or prop(n, "softwareVersion")}
        for _, n in graph.by_type("SoftwareApplication")
    ]
    context = graph.context
    exporter = prop(publisher, "name") if publisher else None
    return {
        "description": f"ELN export{f' from {exporter}' if exporter else ''}: "
        f"{counted(len(experiments), 'experiment')}, {counted(len(files), 'file')}",
        "roCrate": {
            "context": context if isinstance(context, str) else context_urls(context),
            "conformsTo": [name_of(c) for c in refs(raw(descriptor, "conformsTo"))],
            "duplicateIds": graph.duplicates,
        },
        "name": prop(root, "name"),
        "datePublished": prop(root, "datePublished"),
        "dateCreated": prop(root, "dateCreated"),
        "publisher": {"name": prop(publisher, "name"), "url": _url(prop(publisher, "url"))}
        if publisher
        else None,
        "software": software,
        "experimentCount": len(experiments),
        "experiments": experiments[:MAX_LISTED],
        "fileCount": len(files),
        "files": files[:MAX_LISTED],
        **_acquisition(experiments, root),
    }


def _acquisition(experiments: list[dict[str, Any]], root: Node) -> Metadata:
    """When the work was done: the span of the experiments' creation, else the crate's own dates."""
    times = sorted(
        [
            (_instant(moment), moment)
            for text in (e.get("dateCreated") for e in experiments)
            if (moment := _parsed(text)) is not None
        ],
        # By instant alone: at equal instants the moments (one zoned, one not) cannot be compared.
        key=lambda pair: pair[0],
    )
    if times:
        return {"acquisition": acquisition_time(times[0][1], times[-1][1], source="experiments' dateCreated")}
    for key in ("dateCreated", "datePublished"):
        text = prop(root, key)
        if _parsed(text) is not None:
            return {"acquisition": acquisition_time(str(text).strip(), source=f"the crate's {key}")}
    return {}


def _parsed(text: Any) -> datetime | None:
    """An ISO 8601 time as written (with or without a zone); None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _instant(moment: datetime) -> datetime:
    # Only to order by: a time without a zone is taken as UTC here, never written so.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _descriptor(graph: Graph) -> tuple[Node, str]:
    """The metadata descriptor and the root dataset's @id it is about ("./" when it says none)."""
    descriptor = next(
        (
            node
            for node_id, node in graph.nodes.items()
            if node_id.rsplit("/", 1)[-1] in DESCRIPTOR_IDS and "about" in node
        ),
        {},
    )
    about = graph.resolve(descriptor.get("about")) if descriptor else {}
    root_id = about.get("@id") if isinstance(about.get("@id"), str) else "./"
    return descriptor, str(root_id)


def _url(value: Any) -> Any:
    return value.get("@id") if isinstance(value, dict) else value


def _experiment(node: Node, name_of: Callable[[Any], Any]) -> dict[str, Any]:
    described = {
        "name": prop(node, "name"),
        "author": [name_of(a) for a in refs(raw(node, "author"))] or None,
        "dateCreated": prop(node, "dateCreated"),
        "dateModified": prop(node, "dateModified"),
        "keywords": prop(node, "keywords"),
        "variableMeasured": [name_of(v) for v in refs(raw(node, "variableMeasured"))] or None,
    }
    return {key: value for key, value in described.items() if value}


def _file(node_id: str, node: Node) -> dict[str, Any]:
    described = {
        "id": node_id,
        "name": prop(node, "name"),
        "encodingFormat": prop(node, "encodingFormat"),
        "contentSize": prop(node, "contentSize"),
    }
    return {key: value for key, value in described.items() if value is not None}


def verify_checksums(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    root: str,
    graph: Graph,
    budget: Budget,
) -> dict[str, Any]:
    """Hash every member the crate declares a sha256 for; report each mismatch."""
    checked, problems = 0, []
    for node_id, node in graph.nodes.items():
        declared_value = prop(node, "sha256")
        if declared_value is None or not types(node) & FILE_TYPES:
            continue
        declared = str(declared_value)
        member = normalise(f"{root}/{unquote(node_id).removeprefix('./')}" if root else unquote(node_id))
        if not _SHA256.match(declared):
            kind = "an MD5 (32 hex digits)" if re.match(r"^[0-9a-fA-F]{32}$", declared) else "not a SHA-256"
            problems.append(
                {"file": node_id, "declared": declared, "problem": f"the declared value is {kind}"}
            )
            continue
        info = members.get(member)
        if info is None:
            problems.append(
                {"file": node_id, "declared": declared, "problem": "no such member in the archive"}
            )
            continue
        digest = hashlib.sha256()
        try:
            with archive.open(info) as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    budget.check()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ExtractionError(f"member {member!r} cannot be read: {exc}") from None
        checked += 1
        if digest.hexdigest() != declared.lower():
            problems.append(
                {"file": node_id, "declared": declared, "actual": digest.hexdigest(), "problem": "mismatch"}
            )
    return {
        "declared": checked + len(problems),
        "verified": checked - sum(p["problem"] == "mismatch" for p in problems),
        "allMatch": not problems,
        "problems": problems,
    }


def checksum_warnings(checksums: dict[str, Any]) -> list[str]:
    """The declared checksums that do not hold, one sentence per kind of problem, for the sidecar."""
    by_problem: dict[str, list[str]] = {}
    for problem in checksums["problems"]:
        by_problem.setdefault(problem["problem"], []).append(str(problem["file"]))
    warnings = []
    for problem, files in sorted(by_problem.items()):
        listed = ", ".join(repr(f) for f in files[:5])
        if len(files) > 5:
            listed += f" and {len(files) - 5} more"
        if problem == "mismatch":
            what = "declares a SHA-256 that does not match the bytes of"
        elif problem == "no such member in the archive":
            what = "declares a SHA-256 for a file it does not hold:"
        elif problem == "the declared value is not a SHA-256":
            what = "gives a value that is not a SHA-256 for"
        else:
            what = f"gives {problem.removeprefix('the declared value is ')}, not a SHA-256, for"
        warnings.append(f"the archive's crate {what} {listed}")
    return warnings
