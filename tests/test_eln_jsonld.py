"""The eln extractor reads a crate as JSON-LD: inline nodes with or without @id, any order, any form
of @context, RO-Crate 1.0 to 1.2; what its checksums declare wrongly becomes the sidecar's warning."""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agent.core.config import AgentConfig
from agent.extractors.base import Budget, Source
from agent.extractors.eln import ElnExtractor, checksum_warnings

from .conftest import REPO, dead_letters, read_sidecar, run_scan

DATA = b"time,od600\n0,0.10\n60,0.12\n"
DATA_SHA256 = hashlib.sha256(DATA).hexdigest()


def write_eln(
    path: Path,
    graph: list[dict[str, Any]],
    *,
    context: Any = "https://w3id.org/ro/crate/1.1/context",
    descriptor_name: str = "ro-crate-metadata.json",
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"export/{descriptor_name}", json.dumps({"@context": context, "@graph": graph}))
        archive.writestr("export/data.csv", DATA)
    return path


def extract(path: Path) -> dict[str, Any]:
    return ElnExtractor().extract(Source(path, path.name, path.parent), Budget(30))


def crate_graph(
    *, publisher: Any, author: Any, sha256: str = DATA_SHA256, descriptor_id: str = "ro-crate-metadata.json"
) -> list[dict[str, Any]]:
    return [
        {
            "@id": descriptor_id,
            "@type": "CreativeWork",
            "about": {"@id": "./"},
            "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"},
            "sdPublisher": publisher,
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "name": "Growth curves",
            "datePublished": "2026-03-16T10:30:00+01:00",
            "hasPart": [{"@id": "./experiment/"}],
        },
        {
            "@id": "./experiment/",
            "@type": "Dataset",
            "name": "OD600 of strain K12",
            "author": author,
            "dateCreated": "2026-03-15T17:02:00+01:00",
            "hasPart": [{"@id": "data.csv"}],
        },
        {"@id": "data.csv", "@type": "File", "name": "data.csv", "sha256": sha256},
    ]


def test_an_inline_publisher_without_id_and_inline_authors_are_read(tmp_path: Path) -> None:
    graph = crate_graph(
        publisher={"@type": "Organization", "name": "Lab ELN", "url": "https://eln.example.org"},
        author=[
            {"@type": "Person", "givenName": "Ada", "familyName": "Lovelace"},
            {"@id": "https://orcid.org/0000-0002-1825-0097", "@type": "Person", "name": "Josiah Carberry"},
        ],
    )
    meta = extract(write_eln(tmp_path / "inline.eln", graph))
    assert meta["publisher"] == {"name": "Lab ELN", "url": "https://eln.example.org"}
    assert meta["experiments"][0]["author"] == ["Ada Lovelace", "Josiah Carberry"]
    assert meta["checksums"]["allMatch"] and meta["warnings"] == []


def test_the_graphs_order_does_not_matter(tmp_path: Path) -> None:
    graph = crate_graph(publisher={"@id": "#eln"}, author={"@id": "#ada"})
    graph += [
        {"@id": "#eln", "@type": "Organization", "name": "Lab ELN"},
        {"@id": "#ada", "@type": "Person", "name": "Ada Lovelace"},
    ]
    expected = extract(write_eln(tmp_path / "ordered.eln", graph))
    for seed in range(5):
        shuffled = graph[:]
        random.Random(seed).shuffle(shuffled)
        meta = extract(write_eln(tmp_path / f"shuffled-{seed}.eln", shuffled))
        assert {k: meta[k] for k in ("name", "publisher", "experiments", "files")} == {
            k: expected[k] for k in ("name", "publisher", "experiments", "files")
        }
    assert expected["name"] == "Growth curves" and expected["publisher"]["name"] == "Lab ELN"


def test_a_nested_inline_node_is_found(tmp_path: Path) -> None:
    # The experiment itself is inline in the root's hasPart, its author inline in it.
    graph = crate_graph(publisher={"@id": "#eln"}, author=None)
    root, experiment = graph[1], graph.pop(2)
    experiment["author"] = {"@type": "Person", "name": "Grace Hopper", "affiliation": {"name": "Navy"}}
    root["hasPart"] = [experiment]
    meta = extract(write_eln(tmp_path / "nested.eln", graph))
    assert meta["experimentCount"] == 1
    assert meta["experiments"][0]["author"] == ["Grace Hopper"]


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ("https://w3id.org/ro/crate/1.2/context", "https://w3id.org/ro/crate/1.2/context"),
        (
            ["https://w3id.org/ro/crate/1.1/context", {"@vocab": "http://schema.org/"}],
            ["https://w3id.org/ro/crate/1.1/context"],
        ),
        ({"@vocab": "http://schema.org/", "sha256": "https://w3id.org/ro/terms/workflow-run#sha256"}, []),
    ],
    ids=["string", "list", "object"],
)
def test_every_form_of_context_is_read(tmp_path: Path, context: Any, named: Any) -> None:
    graph = crate_graph(publisher={"@type": "Organization", "name": "Lab ELN"}, author=None)
    meta = extract(write_eln(tmp_path / "ctx.eln", graph, context=context))
    assert meta["name"] == "Growth curves" and meta["publisher"]["name"] == "Lab ELN"
    assert meta["roCrate"]["context"] == named


def test_full_iris_and_value_objects_read_as_their_terms(tmp_path: Path) -> None:
    graph = crate_graph(publisher=None, author=None)
    graph[1] = {
        "@id": "./",
        "@type": "http://schema.org/Dataset",
        "http://schema.org/name": {"@value": "Growth curves", "@language": "en"},
        "schema:datePublished": "2026-03-16",
    }
    meta = extract(write_eln(tmp_path / "iris.eln", graph))
    assert meta["name"] == "Growth curves" and meta["datePublished"] == "2026-03-16"


def test_an_ro_crate_1_0_export_is_read(tmp_path: Path) -> None:
    graph = crate_graph(
        publisher={"@type": "Organization", "name": "Old ELN"},
        author=None,
        descriptor_id="ro-crate-metadata.jsonld",
    )
    path = write_eln(
        tmp_path / "v10.eln",
        graph,
        context="https://w3id.org/ro/crate/1.0/context",
        descriptor_name="ro-crate-metadata.jsonld",
    )
    meta = extract(path)
    assert meta["name"] == "Growth curves" and meta["publisher"]["name"] == "Old ELN"
    assert meta["checksums"]["verified"] == 1


async def test_an_md5_declared_as_sha256_is_a_warning_and_a_validation_note(
    drop: Path, config: AgentConfig
) -> None:
    md5 = hashlib.md5(DATA).hexdigest()
    graph = crate_graph(publisher={"@type": "Organization", "name": "Lab ELN"}, author=None, sha256=md5)
    graph.append({"@id": "gone.csv", "@type": "File", "sha256": "ab" * 32})
    eln = write_eln(drop / "EXP-000200_notebook.eln", graph)
    report = await run_scan(drop, config.model_copy(update={"rules_dir": REPO / "rules"}))
    assert report.ok and dead_letters(config) == []
    sidecar = read_sidecar(eln)
    assert sidecar["warnings"] == [
        "the archive's crate declares a SHA-256 for a file it does not hold: 'gone.csv'",
        "the archive's crate gives an MD5 (32 hex digits), not a SHA-256, for 'data.csv'",
    ]
    assert sidecar["validation"]["status"] == "valid"
    assert sidecar["validation"]["notes"] == sidecar["warnings"]


def test_a_checksum_that_is_no_hash_at_all_is_said_plainly() -> None:
    warnings = checksum_warnings(
        {"problems": [{"file": "a", "declared": "x", "problem": "the declared value is not a SHA-256"}]}
    )
    assert warnings == ["the archive's crate gives a value that is not a SHA-256 for 'a'"]


def test_experiments_created_at_the_same_instant_with_and_without_a_zone(tmp_path: Path) -> None:
    """A zoned and an unzoned time of the same instant: sorting them must not compare the two."""
    graph = crate_graph(publisher={"@type": "Organization", "name": "Lab ELN"}, author=None)
    graph[1]["hasPart"] = [{"@id": "./one/"}, {"@id": "./two/"}]
    graph += [
        {"@id": "./one/", "@type": "Dataset", "name": "one", "dateCreated": "2026-03-16T10:30:00"},
        {"@id": "./two/", "@type": "Dataset", "name": "two", "dateCreated": "2026-03-16T10:30:00+00:00"},
    ]
    meta = extract(write_eln(tmp_path / "same.eln", graph))
    assert meta["acquisition"]["end"].startswith("2026-03-16T10:30:00")
