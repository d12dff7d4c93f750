"""Rate limits on the public links: tracking (opens, clicks), push reports, and the
unsubscribe, preference and confirmation pages.

Anyone holding a link from a message can call it as often as they like, and each call is
a transaction through the writer. The limits are token buckets (ingest/ratelimit.py) on
the app's clock, kept by each serving process:

- per person (the workspace and the profile a verified token names), in two buckets: the
  engagement reports (opens, clicks, push delivered / clicked), and the consent pages
  (unsubscribe, preferences, confirmation). Keyed by the person, not by the client's
  address: mailbox providers fetch images (Gmail's image proxy), follow links (link
  scanners) and send one-click unsubscribes (RFC 8058) for millions of people from a few
  addresses, and a limit per address would refuse those people. Separate buckets, so that
  a flood of opens or clicks never uses up a person's unsubscribe: the first consent
  request of a person always passes, and a person would have to unsubscribe or save
  their preferences CONSENT_BURST times in a row to meet the limit.
- per client address, for tokens whose workspace's link secret this process has not read
  yet (a database read each): a client inventing tokens cannot make the server read the
  database for each one. A real link of a workspace already seen never reaches this limit.

Over a limit the answer is 429 with Retry-After (LinkThrottled, answered by
`throttled_answer` in web/tracking.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nudgeflow.core.clock import Clock
from nudgeflow.errors import WebError
from nudgeflow.ingest.ratelimit import RateLimiter

# per person: a second's worth refills each second, a minute's burst
ENGAGEMENT_RATE, ENGAGEMENT_BURST = 1.0, 60
# per person: one every 5 seconds, 20 in a row
CONSENT_RATE, CONSENT_BURST = 0.2, 20
# per client address: reads of a workspace's link secret not yet cached
LOOKUP_RATE, LOOKUP_BURST = 5.0, 50


class LinkThrottled(WebError):
    """A public link called more often than its limit: 429, retry after `retry_after` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"too many requests; retry in {max(1, math.ceil(wait))} s")
        self.retry_after = max(1, math.ceil(wait))


@dataclass
class LinkLimits:
    engagement: RateLimiter
    consent: RateLimiter
    lookups: RateLimiter

    @classmethod
    def on(cls, clock: Clock) -> LinkLimits:
        return cls(
            engagement=RateLimiter(clock, ENGAGEMENT_RATE, ENGAGEMENT_BURST),
            consent=RateLimiter(clock, CONSENT_RATE, CONSENT_BURST),
            lookups=RateLimiter(clock, LOOKUP_RATE, LOOKUP_BURST),
        )


def take(limiter: RateLimiter, key: str) -> None:
    """One request of `key`, or LinkThrottled."""
    wait = limiter.take(key, 1)
    if wait:
        raise LinkThrottled(wait)
