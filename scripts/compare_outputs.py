"""Do two versions of the agent write the same bytes? A check for changes that must not alter outputs.

    python scripts/compare_outputs.py BASE_REF [--keep]

Exports BASE_REF (any git revision) into a scratch folder, then ingests identical copies of the
shared corpus (``../shared/corpus``: ELN exports and instrument files) and of ``sample_data/`` with
that version and with the working tree, each through ``fair-agent scan`` in a subprocess, twice:
with no rules and no site settings (the generic rule), and with each version's own ``rules/`` and a
site licence, organisation and time zone. Then every file of the two trees is compared byte for
byte: sidecars, crates, error files and the data itself. Exit status 0 when all are identical, 1
when anything differs (each difference is listed), 2 when the check could not run.

The copies keep the source files' modification times, so nothing that the outputs take from the
filesystem differs between the two runs but what the code does with it.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
#: Folders ingested as watch roots, each from a fresh copy: (name in the scratch tree, source).
INPUTS = (("eln", CORPUS / "eln"), ("instruments", CORPUS / "instruments"), ("samples", REPO / "sample_data"))
#: One worker: sessions then commit in the same order in both runs (a drift baseline that is still
#: learning counts sessions in the order they commit, and its sidecars say how many it has seen).
SETTINGS = "workers = 1\n"
SITE = """
[site]
organisation = "Example Lab, Example University"
license = "https://creativecommons.org/licenses/by/4.0/"
timezone = "Europe/Berlin"
"""
#: Runs the agent of one source tree, whatever is installed in the interpreter.
LAUNCHER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from agent.cli import main; sys.exit(main())"


def export_revision(ref: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def ingest(tree: Path, work: Path, *, with_rules: bool) -> Path:
    """Copies of every input under ``work/drop``, scanned by the agent in ``tree``; returns the drop."""
    drop = work / "drop"
    work.mkdir(parents=True)
    config = work / "agent.toml"
    config.write_text(SETTINGS + (SITE if with_rules else ""), encoding="utf-8")
    for name, source in INPUTS:
        shutil.copytree(source, drop / name)  # copy2: modification times are kept
        args = ["scan", str(drop / name), "--config", str(config), "--state-dir", str(work / "state")]
        if with_rules:
            args += ["--rules", str(tree / "rules")]
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(tree), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC"},
        )
        # 0: all ingested; 1: something dead-lettered (the sample lab's rejected session). Both are
        # outcomes to compare; anything else means the run itself failed.
        if done.returncode not in (0, 1):
            raise RuntimeError(f"scan of {name} with {tree} failed ({done.returncode}):\n{done.stderr}")
    return drop


def differences(old: Path, new: Path) -> list[str]:
    found = []
    old_files = {p.relative_to(old) for p in old.rglob("*") if p.is_file()}
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    found += [f"only in the base version's output: {p}" for p in sorted(old_files - new_files)]
    found += [f"only in the working tree's output: {p}" for p in sorted(new_files - old_files)]
    for rel in sorted(old_files & new_files):
        if not filecmp.cmp(old / rel, new / rel, shallow=False):
            found.append(f"different bytes: {rel}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", metavar="BASE_REF", help="git revision to compare the working tree with")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and say where it is")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"the shared corpus is not at {CORPUS}", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="fair-agent-compare-"))
    try:
        base_tree = scratch / "base"
        export_revision(args.base, base_tree)
        problems, compared = [], 0
        for with_rules in (False, True):
            setup = "with rules and site settings" if with_rules else "without rules"
            label = "rules" if with_rules else "generic"
            old = ingest(base_tree, scratch / "base-output" / label, with_rules=with_rules)
            new = ingest(REPO, scratch / "new-output" / label, with_rules=with_rules)
            compared += sum(1 for p in new.rglob("*") if p.is_file())
            problems += [f"{setup}: {d}" for d in differences(old, new)]
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"the check could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    for problem in problems:
        print(problem)
    verdict = "identical" if not problems else f"{len(problems)} difference(s)"
    print(f"{compared} files compared against {args.base}: {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
