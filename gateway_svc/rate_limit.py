"""Per-user request rate limit: a token bucket per API key's user, in the gateway's memory.

Pure: the caller passes the time in. Each gateway process limits on its own; with several
gateways behind a load balancer a user gets at most `rate` per gateway.
"""

from __future__ import annotations


class TokenBucketLimiter:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        if rate_per_second < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        self.rate = rate_per_second
        self.burst = max(burst, 1)
        self._buckets: dict[str, tuple[float, float]] = {}
        """user -> (tokens left, time they were counted)."""

    def set_rate(self, rate_per_second: float, burst: int) -> None:
        """New limits (the exchange's rules changed); buckets keep their tokens."""
        self.rate = rate_per_second
        self.burst = max(burst, 1)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        tokens, counted_at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted_at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def forget_full(self, now: float) -> None:
        """Drops every bucket that has refilled: it would start full anyway. Keeps a limiter
        keyed by client address from growing with every address ever seen."""
        if not self.enabled:
            self._buckets.clear()
            return
        burst, rate = float(self.burst), self.rate
        self._buckets = {
            key: (tokens, counted_at)
            for key, (tokens, counted_at) in self._buckets.items()
            if tokens + (now - counted_at) * rate < burst
        }
