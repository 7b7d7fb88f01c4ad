"""SessionTracker: the completion rules, with the clock in the test's hands."""

from __future__ import annotations

import pytest

from agent.core.batch import FileStat
from agent.core.config import CompletionPolicy
from agent.service.tracker import Action, SessionTracker, Verdict

POLICY = CompletionPolicy(quiet_period_s=10, stability_look_s=2, max_session_s=100)
KEY = (1, "run-1")


def files(*sizes: int) -> list[FileStat]:
    return [FileStat(f"run-1/f{i}", size, 1000 + size, i, 0) for i, size in enumerate(sizes)]


def actions(tracker: SessionTracker, now: float) -> list[Action]:
    return [action for _, action in tracker.due(now)]


def test_quiet_period_restarts_on_every_change() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    assert actions(t, 7.9) == []
    t.observe(KEY, POLICY, at=5)
    assert actions(t, 12.9) == []  # the first look waits for quiet - stability = 8 s after t=5
    assert actions(t, 13) == [Action.FIRST_LOOK]


def test_two_equal_looks_seal_the_session() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    assert t.record_look(KEY, files(5), True, now=8) is Verdict.LOOKED
    assert actions(t, 9.9) == []
    assert t.next_deadline() == 10
    assert actions(t, 10) == [Action.SECOND_LOOK]
    assert t.record_look(KEY, files(5), True, now=10) is Verdict.SEALED
    assert KEY not in t and len(t) == 0


def test_second_look_waits_for_the_stability_interval() -> None:
    # Files that lay on disk long before the agent started: both deadlines are past at once.
    t = SessionTracker()
    t.observe(KEY, POLICY, at=-1000)
    assert actions(t, 0) == [Action.FIRST_LOOK]
    t.record_look(KEY, files(5), True, now=0)
    assert actions(t, 1.9) == []
    assert actions(t, 2) == [Action.SECOND_LOOK]


def test_a_size_change_between_looks_restarts_the_wait() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    t.record_look(KEY, files(5), True, now=8)
    assert t.record_look(KEY, files(6), True, now=10) is Verdict.CHANGED
    assert actions(t, 17.9) == []
    assert actions(t, 18) == [Action.FIRST_LOOK]


def test_a_change_after_the_first_look_makes_it_stale() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    t.record_look(KEY, files(5), True, now=8)
    t.observe(KEY, POLICY, at=9)
    assert actions(t, 10) == []
    assert actions(t, 17) == [Action.FIRST_LOOK]


@pytest.mark.parametrize(("names", "sealed"), [(["a.csv"], False), (["a.csv", "run.done"], True)])
def test_marker_policy(names: list[str], sealed: bool) -> None:
    policy = CompletionPolicy(quiet_period_s=10, stability_look_s=2, marker="*.done")
    t = SessionTracker()
    t.observe(KEY, policy, at=0)
    listing = [FileStat(f"run-1/{n}", 1, 1, i, 0) for i, n in enumerate(names)]
    t.record_look(KEY, listing, True, now=8)
    verdict = t.record_look(KEY, listing, True, now=10)
    assert verdict is (Verdict.SEALED if sealed else Verdict.WAITING_FOR_MARKER)
    if not sealed:
        assert t.next_deadline() is None  # no busy loop while waiting for the marker
        assert actions(t, 50) == []
        t.observe(KEY, policy, at=60)  # the marker arrives
        assert actions(t, 68) == [Action.FIRST_LOOK]


def test_loose_files_do_not_wait_for_markers() -> None:
    policy = CompletionPolicy(quiet_period_s=10, stability_look_s=2, marker="*.done")
    t = SessionTracker()
    key = (1, "loose.csv")
    t.observe(key, policy, at=0)
    one = [FileStat("loose.csv", 1, 1, 1, 0)]
    t.record_look(key, one, False, now=8)
    assert t.record_look(key, one, False, now=10) is Verdict.SEALED


def test_vanished_session_is_forgotten() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    assert t.record_look(KEY, None, False, now=8) is Verdict.GONE
    assert len(t) == 0


def test_session_that_keeps_changing_is_warned_about_once() -> None:
    t = SessionTracker()
    for at in range(0, 100, 5):
        t.observe(KEY, POLICY, at=at)
    assert Action.WARN_LONG not in actions(t, 96)
    t.observe(KEY, POLICY, at=100)
    assert Action.WARN_LONG in actions(t, 100)
    t.warned(KEY)
    t.observe(KEY, POLICY, at=105)
    assert Action.WARN_LONG not in actions(t, 106)


def test_old_files_found_at_start_up_are_not_a_long_session() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=-100_000)
    assert actions(t, 0) == [Action.FIRST_LOOK]


def test_busy_sessions_wait() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    assert actions(t, 100) == [Action.FIRST_LOOK]
    assert t.due(100, busy={KEY}) == []
    assert t.next_deadline(busy={KEY}) is None
