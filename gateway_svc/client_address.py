"""Who is calling, by network address, for the limits that apply before (or without) an API
key: public reads and failed sign-ins.

Pure: the peer string gRPC gives and the x-forwarded-for header in, an address out. The header
is believed only from a trusted proxy (Envoy, which appends the address it saw to the header:
the last entry is Envoy's own reading); from anybody else it is ignored, so a client cannot
choose its address by sending one.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway_svc.rate_limit import TokenBucketLimiter

FORGET_AFTER_ADDRESSES = 10_000
"""Refilled buckets are dropped once a limiter holds this many addresses."""


def peer_host(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` → `127.0.0.1`, `ipv6:[::1]:5000` → `::1`, `unix:/x` → `unix:/x`."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def client_address(peer: str, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    host = peer_host(peer)
    if forwarded_for and host in trusted:
        last = forwarded_for.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return host


class AddressLimits:
    """Per-address token buckets: public reads, and failed authentications (a wrong key costs
    a token; none left means RESOURCE_EXHAUSTED instead of another guess)."""

    def __init__(
        self,
        public: TokenBucketLimiter,
        failed_auth: TokenBucketLimiter,
        trusted_proxies: Iterable[str],
    ) -> None:
        self.public = public
        self.failed_auth = failed_auth
        self.trusted_proxies = frozenset(trusted_proxies)

    def address(self, peer: str, metadata: Iterable[tuple[str, str | bytes]]) -> str:
        forwarded = next((value for key, value in metadata if key == "x-forwarded-for"), None)
        if isinstance(forwarded, bytes):
            forwarded = forwarded.decode("latin-1")
        return client_address(peer, forwarded, self.trusted_proxies)

    def take(self, limiter: TokenBucketLimiter, address: str, now: float) -> float:
        """As TokenBucketLimiter.take: 0.0 when allowed, else the seconds to wait."""
        if len(limiter) >= FORGET_AFTER_ADDRESSES:
            limiter.forget_full(now)
        return limiter.take(address, now)
