"""What every benchmark script shares: choosing scenarios, scratch data, and the targets table."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: A scenario prints its figures and returns (target described with the figure, met?) pairs.
Scenario = Callable[[argparse.Namespace], list[tuple[str, bool]]]

REPO = Path(__file__).resolve().parents[1]


def run_scenarios(parser: argparse.ArgumentParser, scenarios: dict[str, Scenario]) -> int:
    """Parse argv, run the chosen scenarios (all by default), print the targets; exit status."""
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(scenarios)} (default: all)"
    )
    parser.add_argument("--dir", type=Path, default=REPO / "bench" / ".data", help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    chosen = args.scenarios or list(scenarios)
    if unknown := set(chosen) - set(scenarios):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.dir.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, bool]] = []
    try:
        for name in chosen:
            results += scenarios[name](args)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    print("\nTargets")
    for text, ok in results:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
    return 0 if all(ok for _, ok in results) else 1


def peak_rss_mb(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Peak RSS of a child process (ru_maxrss of the waited-for child, in KiB on Linux)."""
    code = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return int(out.stdout.strip()) / 1024


def write_repeated(path: Path, header: str, rows: bytes, size: int) -> int:
    """``header``, then ``rows`` again and again until the file holds at least ``size`` bytes;
    the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(header.encode())
        written = len(header)
        while written < size:
            f.write(rows)
            written += len(rows)
    return written
