"""Rebuild ``sample_data/EXP-000125_notebook.eln`` deterministically.

An ``.eln`` file (ELN Consortium format) is a ZIP holding one folder with an RO-Crate. This one is
made by the project, so sample_data holds nothing from third parties. Run: python3 scripts/make_sample_eln.py
"""

import hashlib
import json
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "sample_data"
FOLDER = "EXP-000125_notebook"
STAMP = (2026, 3, 16, 10, 30, 0)

protocol = (
    b"Protocol: overnight culture\n"
    b"1. Inoculate 5 mL LB with a single colony.\n"
    b"2. Grow at 37 C, 200 rpm, 16 h.\n"
)
results = b"sample,OD600\nculture-1,2.31\nculture-2,2.27\n"

crate = {
    "@context": "https://w3id.org/ro/crate/1.1/context",
    "@graph": [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "about": {"@id": "./"},
            "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"},
            "dateCreated": "2026-03-16T10:30:00+01:00",
            "sdPublisher": {"@id": "#eln"},
        },
        {
            "@id": "#eln",
            "@type": "Organization",
            "name": "Sample lab notebook",
            "url": "https://example.org/eln",
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "name": "EXP-000125 overnight cultures",
            "hasPart": [{"@id": "./experiment-125/"}],
            "datePublished": "2026-03-16T10:30:00+01:00",
            "license": {"@id": "https://creativecommons.org/licenses/by/4.0/"},
        },
        {
            "@id": "./experiment-125/",
            "@type": "Dataset",
            "name": "Overnight cultures for EXP-000125",
            "author": {"@id": "#alice"},
            "dateCreated": "2026-03-15T17:02:00+01:00",
            "dateModified": "2026-03-16T10:29:00+01:00",
            "keywords": "E. coli, overnight culture",
            "hasPart": [{"@id": "./experiment-125/protocol.txt"}, {"@id": "./experiment-125/results.csv"}],
        },
        {"@id": "#alice", "@type": "Person", "name": "Alice Example"},
        *(
            {
                "@id": f"./experiment-125/{name}",
                "@type": "File",
                "name": name,
                "encodingFormat": fmt,
                "contentSize": str(len(data)),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for name, fmt, data in (
                ("protocol.txt", "text/plain", protocol),
                ("results.csv", "text/csv", results),
            )
        ),
    ],
}

members = {
    f"{FOLDER}/ro-crate-metadata.json": json.dumps(crate, indent=2).encode(),
    f"{FOLDER}/experiment-125/protocol.txt": protocol,
    f"{FOLDER}/experiment-125/results.csv": results,
}
with zipfile.ZipFile(HERE / f"{FOLDER}.eln", "w", zipfile.ZIP_DEFLATED) as archive:
    for name, data in members.items():
        archive.writestr(zipfile.ZipInfo(name, STAMP), data, zipfile.ZIP_DEFLATED)
