"""The client's address for the per-address limits, and the buckets kept for it."""

from __future__ import annotations

import pytest

from gateway_svc.client_address import AddressLimits, client_address, peer_host
from gateway_svc.rate_limit import TokenBucketLimiter

LOOPBACK = frozenset({"127.0.0.1", "::1"})


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:50123", "127.0.0.1"),
        ("ipv6:[::1]:50123", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    # Envoy appends the address it saw: a client's own header comes first and is not used.
    assert client_address("ipv4:127.0.0.1:1", "6.6.6.6, 10.0.0.9", LOOPBACK) == "10.0.0.9"
    assert client_address("ipv4:10.0.0.9:1", "6.6.6.6", LOOPBACK) == "10.0.0.9"
    assert client_address("ipv4:127.0.0.1:1", None, LOOPBACK) == "127.0.0.1"
    assert client_address("ipv4:127.0.0.1:1", " ", LOOPBACK) == "127.0.0.1"


def test_addresses_have_their_own_buckets() -> None:
    limits = AddressLimits(TokenBucketLimiter(1.0, 2), TokenBucketLimiter(0, 0), LOOPBACK)
    assert [limits.take(limits.public, "a", 0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limits.take(limits.public, "b", 0.0) == 0.0
    assert limits.take(limits.failed_auth, "a", 0.0) == 0.0  # rate 0: off


def test_refilled_buckets_are_forgotten() -> None:
    limiter = TokenBucketLimiter(1.0, 2)
    limiter.take("spent", 0.0)
    limiter.take("spent", 0.0)
    limiter.take("refilled", 0.0)
    limiter.forget_full(1.5)
    assert len(limiter) == 1  # "spent" has 1.5 of 2 tokens; "refilled" is full again
    assert limiter.take("refilled", 1.5) == 0.0
