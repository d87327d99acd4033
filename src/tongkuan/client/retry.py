"""When to try a request again: 429 (over the rate limit) and 503 (a store unreachable) are
answers that a later try may not get, so both clients wait and retry a bounded number of
times, honouring the service's Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries a request gets and how long to wait between them.

    The wait after try n is `backoff * 2**(n-1)`, at most `max_backoff`, less up to a
    `jitter` fraction of it drawn at random (so clients refused together do not come back
    together). A Retry-After from the service replaces that wait; one longer than
    `max_retry_after` ends the retries at once, since waiting that long is the caller's call.

    >>> RetryPolicy(attempts=1)  # never retry  # doctest: +SKIP
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    draw: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts counts the first try, so it is at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction from 0 to 1")

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait after try `attempt` (from 1) was refused with 429 or 503, or None
        to stop and raise the refusal."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        wait = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return wait * (1.0 - self.jitter * self.draw())


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The Retry-After header in seconds (it may be seconds or an HTTP date); None when absent
    or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
