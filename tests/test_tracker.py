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


# -- the spacing of the two looks: events report every write, polling sees writes late -----------

SHORT = CompletionPolicy(quiet_period_s=1.0, stability_look_s=1.0)  # the default look, a short quiet


def test_with_events_a_quiet_session_is_sealed_at_the_end_of_the_quiet_period() -> None:
    t = SessionTracker()
    t.observe(KEY, SHORT, at=0)
    assert actions(t, 0.49) == []
    assert actions(t, 0.5) == [Action.FIRST_LOOK]  # half the quiet period before its end
    assert t.record_look(KEY, files(5), True, now=0.5) is Verdict.LOOKED
    assert t.next_deadline() == 1.0  # no wait beyond the quiet period
    assert actions(t, 1.0) == [Action.SECOND_LOOK]
    assert t.record_look(KEY, files(5), True, now=1.0) is Verdict.SEALED


def test_a_polled_session_keeps_the_full_spacing_between_its_looks() -> None:
    t = SessionTracker()
    t.observe(KEY, SHORT, at=0, polled=True)
    t.record_look(KEY, files(5), True, now=0.5)
    assert actions(t, 1.0) == []
    assert t.next_deadline() == 1.5
    assert t.record_look(KEY, files(5), True, now=1.5) is Verdict.SEALED


def test_a_session_once_polled_stays_cautious() -> None:
    # The root fell back to polling (or its notifications failed) while the session was pending.
    t = SessionTracker()
    t.observe(KEY, SHORT, at=0)
    t.observe(KEY, SHORT, at=0.1, polled=True)
    t.observe(KEY, SHORT, at=0.2)
    t.record_look(KEY, files(5), True, now=0.7)
    assert t.next_deadline() == 1.7


def test_with_events_a_late_first_look_still_waits_the_spacing() -> None:
    # The scheduler was busy: the first look came late; the second still follows it by the spacing.
    t = SessionTracker()
    t.observe(KEY, SHORT, at=0)
    t.record_look(KEY, files(5), True, now=0.9)
    assert t.next_deadline() == pytest.approx(1.4)


def test_a_change_reported_while_a_look_is_taken_makes_it_worthless() -> None:
    # The look began at 10 (dated when it began); a write was reported at 10.01, before it ended.
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    t.record_look(KEY, files(5), True, now=8)
    t.observe(KEY, POLICY, at=10.01)
    assert t.record_look(KEY, files(5), True, now=10) is Verdict.CHANGED
    assert KEY in t
    assert actions(t, 17.9) == []
    assert actions(t, 18.01) == [Action.FIRST_LOOK]


def test_a_session_recreated_while_a_look_found_it_gone_is_kept() -> None:
    t = SessionTracker()
    t.observe(KEY, POLICY, at=0)
    t.observe(KEY, POLICY, at=8.5)  # reported while the look (begun at 8) found nothing
    assert t.record_look(KEY, None, True, now=8) is Verdict.CHANGED
    assert KEY in t
