"""How many crates made from the shared corpus pass the RO-Crate validator at RECOMMENDED level.

Copies ``../shared/corpus`` (its ``eln`` and ``instruments`` folders, each a watch root) to a
temporary folder, ingests it with the shipped rules and a full site configuration (a licence, a
publisher with ROR and url, a contact), runs ``../shared/tools/validate-crate -l RECOMMENDED`` on
every crate, and prints each crate's failed checks and the pass rate: counting every check, and
without check 81.1, which roc-validator 0.13.0 fails for every spec-conforming format entity (see the
README). Exit status 0 when at least ``--target`` of the crates pass apart from that check.

    python scripts/recommended_report.py [--target 0.9] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VALIDATOR_DEFECTS = {"ro-crate-1.2_81.1"}
SITE = """
[site]
organisation = "Example Lab, Example University"
license = "https://creativecommons.org/licenses/by/4.0/"
timezone = "Europe/Berlin"

[site.publisher]
name = "Example University"
ror = "https://ror.org/00x0x0x00"
url = "https://www.example.org"

[site.contact]
name = "Research data team"
email = "rdm@example.org"
"""


def ingest(work: Path) -> list[Path]:
    """The corpus ingested under ``work``; the session folders that got a crate."""
    config = work / "agent.toml"
    config.write_text(f'state_dir = "{work / "state"}"\nrules_dir = "{REPO / "rules"}"\n{SITE}')
    for part in ("eln", "instruments"):
        shutil.copytree(SHARED / "corpus" / part, work / part)
        scan = [sys.executable, "-m", "agent.cli", "scan", str(work / part), "--config", str(config)]
        done = subprocess.run(scan, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            sys.exit(f"scanning {part} failed:\n{done.stdout}\n{done.stderr}")
    return sorted(p.parent for p in work.glob("*/**/ro-crate-metadata.json"))


def failed_checks(crate: Path) -> list[str]:
    validator = [sys.executable, str(SHARED / "tools" / "validate-crate"), str(crate), "-l", "RECOMMENDED"]
    out = subprocess.run(validator, capture_output=True, text=True).stdout
    return sorted(set(re.findall(r"\[(?:REQUIRED|RECOMMENDED)\] (ro-crate-1\.2_[\d.]+ [^\n]*)", out)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--keep", type=Path, help="ingest here and keep it, instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recommended-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        crates = ingest(work)
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = dict(zip(crates, pool.map(failed_checks, crates), strict=True))
    strict = sum(not failed for failed in results.values())
    lenient = sum(all(f.split()[0] in VALIDATOR_DEFECTS for f in failed) for failed in results.values())
    for crate, failed in results.items():
        print(f"{crate.relative_to(work)}: {'pass' if not failed else '; '.join(failed)}")
    total = len(results)
    print(f"\n{total} crates; pass RECOMMENDED: {strict} ({strict / total:.0%})")
    print(f"pass RECOMMENDED but for the validator's defect in 81.1: {lenient} ({lenient / total:.0%})")
    return 0 if lenient >= args.target * total else 1


if __name__ == "__main__":
    sys.exit(main())
