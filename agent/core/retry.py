"""When to try a retryable failure again: exponential backoff with full jitter, per kind of failure.

Retries never sleep inside a worker: a failed batch is handed back with the delay it must wait, and
the worker pool submits it again when the delay is over, so other sessions go on meanwhile.
"""

from __future__ import annotations

import random

from .config import RetryPolicy, RetrySettings
from .errors import Category

_rng = random.Random()


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] (AWS architecture blog)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2 ** (attempt - 1)))
    return (rng or _rng).uniform(0, ceiling)


def is_retryable(exc: BaseException) -> bool:
    return getattr(exc, "category", Category.TERMINAL) == Category.RETRYABLE


def retry_delay(
    exc: BaseException, attempt: int, settings: RetrySettings, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``; None when the failure is final.

    Final: a terminal failure, or a retryable one whose policy allows no more attempts.
    """
    if not is_retryable(exc):
        return None
    policy = settings.policy_for(getattr(exc, "retry_kind", "io"))
    if attempt >= policy.attempts:
        return None
    return backoff_delay(attempt, policy, rng)
