"""Exponential backoff with full jitter for retryable failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .config import RetrySettings
from .errors import Category

T = TypeVar("T")

_rng = random.Random()


@dataclass(frozen=True, slots=True)
class Attempted(Generic[T]):
    """The outcome of a call that may have been tried several times."""

    value: T | None
    error: BaseException | None
    attempts: int


def backoff_delay(attempt: int, settings: RetrySettings, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] (AWS architecture blog)."""
    ceiling = min(settings.max_delay_s, settings.base_delay_s * (2 ** (attempt - 1)))
    return rng.uniform(0, ceiling)


def is_retryable(exc: BaseException) -> bool:
    return getattr(exc, "category", Category.TERMINAL) == Category.RETRYABLE


async def with_retries(
    call: Callable[[], Awaitable[T]],
    settings: RetrySettings,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    first_error: Exception | None = None,
) -> Attempted[T]:
    """Call until it succeeds, fails terminally, or the attempt budget is spent.

    ``first_error`` is the failure of a first attempt made elsewhere (e.g. in a group of files
    hashed together); the budget counts it. Only ``Exception`` is caught: cancellation and
    KeyboardInterrupt pass through.
    """
    rng = rng or _rng
    attempt = 1 if first_error is not None else 0
    error = first_error
    while True:
        if error is not None:
            if not is_retryable(error) or attempt >= settings.attempts:
                return Attempted(None, error, attempt)
            delay = backoff_delay(attempt, settings, rng)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await sleep(delay)
        attempt += 1
        try:
            return Attempted(await call(), None, attempt)
        except Exception as exc:
            error = exc
