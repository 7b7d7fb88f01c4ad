"""Crash consistency: SIGKILL the real agent at random moments, 20 rounds, seeded."""

from __future__ import annotations

from pathlib import Path

from .chaos_harness import Chaos
from .conftest import validate_crates

SEED = 20261127
ROUNDS = 20


def test_kill_9_at_random_moments_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    chaos = Chaos(tmp_path, seed=SEED, sessions=30, files_per_session=10)
    per_round = len(chaos.pending) // (ROUNDS + 1)
    for _ in range(ROUNDS):
        chaos.round(per_round)
        assert not chaos.report.problems, chaos.report.problems
    chaos.settle()
    assert not chaos.report.problems, chaos.report.problems
    assert chaos.report.rounds == ROUNDS and chaos.ingested_count() == 300
    # Every crate still validates: two of them through the community validator (seconds each).
    crates = sorted(chaos.drop.glob("*/ro-crate-metadata.json"))[:2]
    for result in validate_crates([crate.parent for crate in crates]):
        assert result.returncode == 0, result.stdout
