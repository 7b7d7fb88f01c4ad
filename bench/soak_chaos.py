"""Soak: hundreds of kill -9 rounds against the real agent (the suite runs 20; see tests/test_chaos.py).

Prints how many rounds ran, what start-up had to repair (outputs of interrupted batches adopted,
orphan temp files removed), and every invariant that broke.

    python bench/soak_chaos.py --rounds 300 --seed 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chaos_harness import Chaos  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--files-per-round", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fair-agent-soak-"))
    started = time.monotonic()
    try:
        sessions = max(1, args.rounds * args.files_per_round // 10)
        chaos = Chaos(workdir, seed=args.seed, sessions=sessions, files_per_session=10)
        per_round = len(chaos.pending) // (args.rounds + 1)
        for i in range(args.rounds):
            chaos.round(per_round)
            if chaos.report.problems:
                break
            if (i + 1) % 50 == 0:
                print(f"  {i + 1} rounds, {chaos.ingested_count()} files ingested so far", flush=True)
        if not chaos.report.problems:
            chaos.settle(timeout=600)
        adopted = removed = 0
        for line in (workdir / "agent.log").read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)["event"]
                adopted += "of an interrupted run were already in place" in event
                removed += event.startswith("removed ") and "temp file" in event
        elapsed = time.monotonic() - started
        print(f"\nSoak: {chaos.report.rounds} kill -9 rounds, seed {args.seed}, {elapsed:.0f} s")
        print(f"  files dropped and ingested      {chaos.ingested_count()} of {len(chaos.dropped)}")
        print(f"  batches adopted after a crash   {adopted} (sidecars on disk, no ledger commit yet)")
        print(f"  orphan temp-file clean-ups      {removed}")
        print(f"  invariant violations            {len(chaos.report.problems)}")
        for problem in chaos.report.problems[:20]:
            print(f"    - {problem}")
        return 1 if chaos.report.problems else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
