"""The per-key token bucket of the gateway."""

import pytest

from gateway_svc.rate_limit import TokenBucketLimiter


def test_burst_is_allowed_then_the_rate_applies():
    limiter = TokenBucketLimiter(rate_per_second=10, burst=3)
    assert [limiter.take("alice", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("alice", 0.0) == pytest.approx(0.1)
    assert limiter.take("alice", 0.1) == 0.0


def test_keys_are_limited_separately():
    limiter = TokenBucketLimiter(rate_per_second=1, burst=1)
    assert limiter.take("alice", 0.0) == 0.0
    assert limiter.take("alice", 0.0) > 0
    assert limiter.take("bob", 0.0) == 0.0


def test_tokens_do_not_pile_up_beyond_the_burst():
    limiter = TokenBucketLimiter(rate_per_second=100, burst=2)
    limiter.take("alice", 0.0)
    assert [limiter.take("alice", 100.0) for _ in range(3)][2] > 0


def test_zero_rate_turns_the_limit_off():
    limiter = TokenBucketLimiter(rate_per_second=0, burst=0)
    assert all(limiter.take("alice", 0.0) == 0.0 for _ in range(1000))
