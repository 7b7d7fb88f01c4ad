"""When to try a retryable failure again: exponential backoff with full jitter, per kind of failure.

Retries never sleep inside a worker: a failed batch is handed back with the delay it must wait, and
the worker pool submits it again when the delay is over, so other sessions go on meanwhile.
"""

from __future__ import annotations

import random

from .config import RetryPolicy, RetrySettings
from .errors import RetryableError, RetryKind

_rng = random.Random()


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] (AWS architecture blog)."""
    # The exponent is clamped: 2 ** 1024 is no float, and a long outage counts that many tries.
    ceiling = min(policy.max_delay_s, policy.base_delay_s * (2 ** min(attempt - 1, 64)))
    return (rng or _rng).uniform(0, ceiling)


def retry_kind(exc: BaseException) -> RetryKind | None:
    """The kind of a retryable failure; None for a terminal one."""
    return exc.retry_kind if isinstance(exc, RetryableError) else None


def delay_for(
    kind: RetryKind, attempt: int, settings: RetrySettings, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` of a failure of this kind; None when its
    policy allows no more attempts."""
    policy = settings.policy_for(kind)
    if attempt >= policy.attempts:
        return None
    return backoff_delay(attempt, policy, rng)


def retry_delay(
    exc: BaseException, attempt: int, settings: RetrySettings, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``; None when the failure is final.

    Final: a terminal failure, or a retryable one whose policy allows no more attempts.
    """
    kind = retry_kind(exc)
    return None if kind is None else delay_for(kind, attempt, settings, rng)
