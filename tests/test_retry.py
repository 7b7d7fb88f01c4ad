"""Retry: exponential backoff with full jitter, stopping at terminal errors or the budget."""

from __future__ import annotations

import random

import pytest

from agent.config import RetrySettings
from agent.errors import FileChangedError, FileUnreadableError
from agent.retry import backoff_delay, with_retries

SETTINGS = RetrySettings(attempts=4, base_delay_s=1.0, max_delay_s=5.0)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)])
def test_backoff_is_bounded_by_the_exponential_ceiling(attempt: int, ceiling: float) -> None:
    rng = random.Random(1)
    delays = [backoff_delay(attempt, SETTINGS, rng) for _ in range(500)]
    assert max(delays) <= ceiling and min(delays) >= 0
    assert max(delays) > ceiling * 0.9  # full jitter spans the whole range


async def test_retryable_error_is_retried_until_the_budget_is_spent() -> None:
    slept: list[float] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise FileChangedError("still being written")

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    result = await with_retries(flaky, SETTINGS, rng=random.Random(0), sleep=fake_sleep)
    assert calls == 4 and result.attempts == 4 and len(slept) == 3
    assert isinstance(result.error, FileChangedError)


async def test_success_after_a_transient_failure() -> None:
    outcomes = iter([FileChangedError("x"), "done"])

    async def call() -> str:
        value = next(outcomes)
        if isinstance(value, Exception):
            raise value
        return value

    async def no_sleep(_: float) -> None:
        return None

    result = await with_retries(call, SETTINGS, sleep=no_sleep)
    assert result.value == "done" and result.attempts == 2 and result.error is None


async def test_terminal_error_is_not_retried() -> None:
    calls = 0

    async def denied() -> None:
        nonlocal calls
        calls += 1
        raise FileUnreadableError("permission denied")

    result = await with_retries(denied, SETTINGS)
    assert calls == 1 and isinstance(result.error, FileUnreadableError)


async def test_a_first_attempt_made_elsewhere_counts_against_the_budget() -> None:
    calls = 0

    async def still_changing() -> None:
        nonlocal calls
        calls += 1
        raise FileChangedError("x")

    async def no_sleep(_: float) -> None:
        return None

    result = await with_retries(
        still_changing, SETTINGS, sleep=no_sleep, first_error=FileChangedError("first")
    )
    assert calls == 3 and result.attempts == 4
    terminal = await with_retries(still_changing, SETTINGS, first_error=FileUnreadableError("denied"))
    assert calls == 3 and terminal.attempts == 1 and isinstance(terminal.error, FileUnreadableError)
