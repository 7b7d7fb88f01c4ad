"""The hot path's scans, this working tree against another revision, interleaved on the same data.

On a shared machine the speed of the CPU drifts: two runs of the same scan a minute apart differed
by a quarter here. A figure from one run, set beside one taken earlier, cannot tell a change of a
few percent from the weather. This runs the ``fair-agent scan`` of bench_hotpath (20,000 small
files, default settings, start-up included) alternately with this working tree (uncommitted
changes included) and with REV, a git revision checked out in a temporary worktree: N pairs, each
side first in every other pair. For each run it prints the wall-clock time and the CPU time per
file (the agent and its extraction workers, user and system), and at the end the median of the
pairs' ratios, this tree over REV: below 1 is faster. Each run scans a fresh copy of the tree into
a new ledger.

    python bench/bench_compare.py HEAD~3                  # csv and binary, 5 pairs each
    python bench/bench_compare.py 4bd74f5 csv --pairs 9 --dir /dev/shm/fair-bench

A folder on tmpfs (``--dir``) leaves out the disk, whose speed at creating files also drifts
(see the README); the default is bench/.data, as for the other benchmarks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_hotpath import agent_scan_seconds, binary_file, instrument_file
from bench_ingest import make_small_tree
from benchkit import REPO

KINDS = {"csv": instrument_file, "binary": binary_file}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="the git revision to compare this working tree with")
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"any of {', '.join(KINDS)} (default: all)")
    parser.add_argument("--pairs", type=int, default=5, help="runs of each side per kind")
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=REPO / "bench" / ".data", help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    # Bytecode cached (in --dir, each tree's by its path), as an installed agent has it.
    parser.set_defaults(cached_bytecode=True)
    args = parser.parse_args()
    kinds = args.kinds or list(KINDS)
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kind(s): {', '.join(sorted(unknown))}")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    args.dir.mkdir(parents=True, exist_ok=True)
    other = Path(tempfile.mkdtemp(prefix="rev-", dir=args.dir))
    git = ["git", "-C", str(REPO), "worktree"]
    try:
        subprocess.run([*git, "add", "--quiet", "--detach", str(other), args.rev], check=True)
        sides = {"this tree": REPO, args.rev: other}
        for kind in kinds:
            compare(kind, sides, args)
    finally:
        shutil.rmtree(other, ignore_errors=True)
        subprocess.run([*git, "prune"], check=False)
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    return 0


def compare(kind: str, sides: dict[str, Path], args: argparse.Namespace) -> None:
    source = args.dir / f"{kind}-source"
    shutil.rmtree(source, ignore_errors=True)
    n = len(make_small_tree(source, args.files, args.sessions, KINDS[kind]))
    names = list(sides)
    print(f"\n{kind}: {n} x 4 KiB files in {args.sessions} sessions, `fair-agent scan`, default settings")
    for tree in sides.values():  # compiles what each side imports, outside the timed runs
        scan(tree, source, args.dir / "warm-up", args, whole=False)
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for pair in range(args.pairs):
        order = names if pair % 2 == 0 else names[::-1]
        runs = {name: scan(sides[name], source, args.dir / "run", args) for name in order}
        (wall_a, cpu_a), (wall_b, cpu_b) = runs[names[0]], runs[names[1]]
        ratios["wall"].append(wall_a / wall_b)
        ratios["cpu"].append(cpu_a / cpu_b)
        shown = "  ".join(
            f"{name}: {runs[name][0]:6.2f} s {runs[name][1] / n * 1e6:5.0f} µs CPU/file" for name in names
        )
        print(f"  pair {pair + 1}  {shown}")
    for what, values in ratios.items():
        print(
            f"  {what:>4}: {names[0]} / {names[1]} = {statistics.median(values):.3f} "
            f"(median of {len(values)}; from {min(values):.3f} to {max(values):.3f})"
        )


def scan(
    tree: Path, source: Path, work: Path, args: argparse.Namespace, *, whole: bool = True
) -> tuple[float, float]:
    """bench_hotpath's scan, with the agent in ``tree``, of a fresh copy of ``source`` (of its
    first session alone unless ``whole``): wall-clock and CPU seconds."""
    shutil.rmtree(work, ignore_errors=True)
    if whole:
        shutil.copytree(source, work / "drop")
    else:
        first = sorted(source.iterdir())[0]
        shutil.copytree(first, work / "drop" / first.name)
    os.sync()  # the copy's pages, flushed now rather than by the scan's own sync
    return agent_scan_seconds(work / "drop", work / "state", args, tree)


if __name__ == "__main__":
    sys.exit(main())
