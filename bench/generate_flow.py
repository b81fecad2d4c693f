"""Generate a seeded, realistic order flow for one user-less symbol (SPEC.md section 6).

The mid price does a random walk in ticks. Most orders are LIMIT GFD placed a few ticks from the
mid (a share of them crossing it); the rest are IOC and FOK limits priced around the touch and
MARKET orders (IOC or FOK). About 30% of the messages are cancels: mostly of orders that are
still open (recently placed ones, or the staler of two open orders picked at random, as a
market maker re-quotes), a few of orders that already finished or were never placed. A shadow
`BaselineMatcher` tracks which orders are open, so cancels aim at real resting orders.

    python -m bench.generate_flow --messages 1000000 --seed 42 --out build/bench/flow-1m.csv
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bench.baseline_matcher import BaselineMatcher
from bench.flow import Message, cancel, new_order, write_flow
from engine_svc.orders import OrderType, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, FOK = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.FOK


@dataclass(frozen=True)
class FlowMix:
    """The shape of a flow. Shares of new orders are relative weights; the rest are chances."""

    cancel_share: float = 0.30
    """Chance that a message is a cancel (while some order is open)."""
    limit_gfd: float = 0.74
    limit_ioc: float = 0.10
    limit_fok: float = 0.05
    market_ioc: float = 0.08
    market_fok: float = 0.03
    crossing_share: float = 0.08
    """Chance that a LIMIT GFD order is priced through the mid (it trades, then rests)."""
    passive_mean_ticks: float = 4.0
    """Mean distance from the mid of a passive LIMIT GFD order, in ticks."""
    finished_cancel_share: float = 0.04
    """Chance that a cancel aims at an order that already finished or was never placed."""
    recent_cancel_share: float = 0.55
    """Chance that a cancel of an open order picks one of the most recently rested orders."""
    mid_step_chance: float = 0.05
    """Chance per message that the mid moves one tick up or down."""
    start_mid: int = 10_000


DEFAULT_MIX = FlowMix()


class _OpenOrders:
    """Ids the generator believes open, with O(1) random pick and lazy removal of finished ones."""

    def __init__(self, matcher: BaselineMatcher, rng: random.Random) -> None:
        self.matcher = matcher
        self.rng = rng
        self.ids: list[str] = []
        self.recent: deque[str] = deque(maxlen=32)

    def add(self, order_id: str) -> None:
        self.ids.append(order_id)
        self.recent.append(order_id)

    def random_open(self) -> str | None:
        ids = self.ids
        is_open = self.matcher.is_open
        while ids:
            index = self.rng.randrange(len(ids))
            order_id = ids[index]
            if is_open(order_id):
                return order_id
            ids[index] = ids[-1]
            ids.pop()
        return None

    def recent_open(self) -> str | None:
        recent = self.recent
        is_open = self.matcher.is_open
        for _ in range(4):
            if not recent:
                return None
            order_id = recent[self.rng.randrange(len(recent))]
            if is_open(order_id):
                return order_id
        return None


def generate(
    messages: int,
    seed: int,
    mix: FlowMix = DEFAULT_MIX,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Yield `messages` flow messages, the same ones for the same seed and mix."""
    rng = random.Random(seed)
    matcher = BaselineMatcher()
    open_orders = _OpenOrders(matcher, rng)
    finished: deque[str] = deque(maxlen=256)
    kinds = ((LIMIT, GFD), (LIMIT, IOC), (LIMIT, FOK), (MARKET, IOC), (MARKET, FOK))
    weights = (mix.limit_gfd, mix.limit_ioc, mix.limit_fok, mix.market_ioc, mix.market_fok)
    mid = mix.start_mid
    next_id = 1
    passive_rate = 1.0 / mix.passive_mean_ticks

    for count in range(1, messages + 1):
        if progress is not None and count % 100_000 == 0:
            progress(count)
        if rng.random() < mix.mid_step_chance:
            mid = max(100, mid + (1 if rng.random() < 0.5 else -1))

        if rng.random() < mix.cancel_share:
            target = _cancel_target(rng, mix, matcher, open_orders, finished, next_id, mid)
            if target is not None:
                matcher.cancel(target)
                yield cancel(target)
                continue

        order_id = str(next_id)
        next_id += 1
        side = BUY if rng.random() < 0.5 else SELL
        sign = 1 if side == BUY else -1
        order_type, tif = rng.choices(kinds, weights)[0]
        quantity = _quantity(rng)
        if order_type == MARKET:
            price = 0
            quantity = max(1, quantity // 2)
        elif tif == GFD:
            if rng.random() < mix.crossing_share:
                price = mid + sign * rng.randint(0, 3)
            else:
                price = mid - sign * (1 + int(rng.expovariate(passive_rate)))
        else:
            price = mid + sign * rng.randint(-2, 3)
        price = max(1, price)

        matcher.place(order_id, side, order_type, tif, price, quantity)
        if matcher.is_open(order_id):
            open_orders.add(order_id)
        else:
            finished.append(order_id)
        yield new_order(order_id, side, order_type, tif, price, quantity)


def _cancel_target(rng, mix, matcher, open_orders, finished, next_id, mid) -> str | None:
    if rng.random() < mix.finished_cancel_share:
        if finished and rng.random() < 0.75:
            return finished[rng.randrange(len(finished))]
        return str(next_id + 1_000_000_000 + rng.randrange(1_000_000))
    if rng.random() < mix.recent_cancel_share:
        target = open_orders.recent_open()
        if target is not None:
            return target
    first = open_orders.random_open()
    second = open_orders.random_open()
    if first is None or second is None:
        return first
    # The staler of the two: the farther from the mid.
    first_price = matcher.open_orders[first][1]
    second_price = matcher.open_orders[second][1]
    return first if abs(first_price - mid) >= abs(second_price - mid) else second


def _quantity(rng: random.Random) -> int:
    """Mostly round lots of 100 (1 to 50 of them, small ones most often), some odd lots."""
    if rng.random() < 0.1:
        return rng.randint(1, 99)
    return 100 * min(50, 1 + int(rng.expovariate(1 / 3)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, required=True, help="how many messages")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--out", required=True, help="flow CSV to write")
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error(f"--messages {args.messages} must be at least 1")

    def progress(count: int) -> None:
        print(f"generate_flow: {count:,}/{args.messages:,} messages", file=sys.stderr, flush=True)

    written = write_flow(
        args.out,
        generate(args.messages, args.seed, progress=progress if args.messages >= 200_000 else None),
    )
    print(f"generate_flow: wrote {written:,} messages to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
