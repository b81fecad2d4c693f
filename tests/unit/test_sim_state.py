"""The simulator's fold of the log (data_svc/market.py) agrees with the engine that wrote it.

The engine's real events are encoded as the log carries them (EngineBatch); after every batch,
each bot's cash, positions, open orders and held cash in the fold equal the engine's own
accounts, and the scenario's clock, rounds and news are where the engine put them.
"""

from __future__ import annotations

import random

import pytest

from data_svc.market import LOADED, PAUSED, RUNNING, ExchangeState
from engine_svc.accounts import BOT
from engine_svc.codec import event_to_proto
from engine_svc.engine import MatchingEngine
from engine_svc.events import Event, Grant, NewsShock
from engine_svc.orders import OrderType, Side, TimeInForce
from engine_svc.rules import RULES_VERSION, ExchangeSettings
from exchange.internal.v1 import engine_pb2

SECOND = 1_000_000_000
SYMBOLS = ("ACME", "TINY")
BOTS = ("bot-1", "bot-2", "bot-3")


class Log:
    """An engine and the fold of everything it emitted, batch by batch."""

    def __init__(self, **settings) -> None:
        self.engine = MatchingEngine(ExchangeSettings(), market_open=True)
        self.state = ExchangeState()
        self.offset = 0
        self(self.engine.configure(ExchangeSettings(rules_version=RULES_VERSION, **settings), 0))

    def __call__(self, events: list[Event], now: int = 0) -> list[Event]:
        batch = engine_pb2.EngineBatch()
        batch.command.timestamp_ns = now
        batch.events.extend(event_to_proto(event) for event in events)
        self.state.apply(batch, self.offset)
        self.offset += 1
        return events


def opened_market(seed_cash: int = 50_000_000, **settings) -> Log:
    log = Log(**settings)
    log(log.engine.add_symbol("ACME", 0, "0.01", 1, 5_000))
    log(log.engine.add_symbol("TINY", 0, "0.001", 10, 8_000))
    for bot in BOTS:
        grants = tuple(Grant(symbol, 1_000, 0) for symbol in SYMBOLS)
        log(log.engine.create_account(bot, seed_cash, 0, grants=grants, role=BOT))
    log(log.engine.create_account("alice", seed_cash, 0))
    return log


def assert_bots_agree(log: Log) -> None:
    for user_id in BOTS:
        account = log.engine.accounts[user_id]
        folded = log.state.bots[user_id]
        assert folded.cash == account.cash, user_id
        assert {s: q for s, q in folded.positions.items() if q} == {
            s: p.quantity for s, p in account.positions.items() if p.quantity
        }, user_id
        engine_orders = {
            order.order_id: order.quantity - order.filled_quantity
            for order in log.engine.open_orders.values()
            if order.user_id == user_id
        }
        assert {o.order_id: o.remaining for o in folded.open_orders.values()} == engine_orders
        assert folded.held_cash(log.state.symbols) == account.reserved_cash, user_id


@pytest.mark.parametrize("seed", range(6))
def test_bot_accounts_match_the_engine_after_every_batch(seed: int) -> None:
    rng = random.Random(seed)
    log = opened_market(maker_fee_centi_bps=rng.choice((0, 50, 100)), taker_fee_centi_bps=200)
    assert set(log.state.bots) == set(BOTS) and "alice" in log.state.users
    assert "alice" not in log.state.bots
    for step in range(400):
        now = (step + 1) * SECOND // 10
        user = rng.choice(BOTS + ("alice",))
        symbol = rng.choice(SYMBOLS)
        lot = 1 if symbol == "ACME" else 10
        mid = 5_000 if symbol == "ACME" else 8_000
        mine = [o for o in log.engine.open_orders.values() if o.user_id == user]
        if mine and rng.random() < 0.25:
            log(log.engine.cancel_order(rng.choice(mine).order_id, user, now), now)
        else:
            kind = rng.random()
            order_type = OrderType.MARKET if kind < 0.1 else OrderType.LIMIT
            tif = TimeInForce.IOC if kind < 0.4 else TimeInForce.GFD
            price = 0 if order_type == OrderType.MARKET else mid + rng.randint(-5, 5)
            side = rng.choice((Side.BUY, Side.SELL))
            quantity = lot * rng.randint(1, 20)
            events = log.engine.place_order(
                f"o{step}", user, symbol, side, order_type, tif, price, quantity, now, f"c{step}"
            )
            log(events, now)
        if step % 50 == 0:
            assert_bots_agree(log)
    log(log.engine.close_market(500 * SECOND), 500 * SECOND)
    assert not log.state.market_open
    assert_bots_agree(log)
    assert all(not bot.open_orders for bot in log.state.bots.values())
    assert any(log.state.symbols[symbol].recent_trades for symbol in SYMBOLS)


def test_book_top_and_halts_follow_the_engine() -> None:
    log = opened_market()
    log(log.engine.place_order("b", "bot-1", "ACME", Side.BUY, OrderType.LIMIT,
                               TimeInForce.GFD, 4_990, 7, 1))  # fmt: skip
    log(log.engine.place_order("s", "bot-2", "ACME", Side.SELL, OrderType.LIMIT,
                               TimeInForce.GFD, 5_010, 3, 2))  # fmt: skip
    market = log.state.symbols["ACME"]
    assert (market.bid, market.bid_size, market.ask, market.ask_size) == (4_990, 7, 5_010, 3)
    assert market.tick_cash == 100 and log.state.symbols["TINY"].tick_cash == 10
    log(log.engine.place_order("t", "alice", "ACME", Side.BUY, OrderType.LIMIT,
                               TimeInForce.IOC, 5_010, 2, 3))  # fmt: skip
    assert (market.last, market.last_quantity, market.ask_size) == (5_010, 2, 1)
    assert list(market.recent_trades) == [5_010]
    log(log.engine.halt(4, "ACME"))
    assert market.halted
    log(log.engine.resume(5, "ACME"))
    assert not market.halted


def test_scenario_clock_rounds_and_news() -> None:
    log = opened_market()
    engine = log.engine
    log(engine.set_scenario(LOADED, 10 * SECOND, name="quick", seed=7, digest="d", rounds=2),
        10 * SECOND)  # fmt: skip
    status = log.state.scenario
    assert (status.state, status.name, status.seed, status.clock(99 * SECOND)) == (
        LOADED, "quick", 7, 0,
    )  # fmt: skip
    loaded_sequence = status.loaded_sequence
    assert loaded_sequence > 0
    log(engine.set_scenario(RUNNING, 20 * SECOND), 20 * SECOND)
    assert status.clock(25 * SECOND) == 5 * SECOND
    log(engine.start_round(1, 80 * SECOND, False, 21 * SECOND), 21 * SECOND)
    assert (log.state.round, log.state.round_open, log.state.round_ends_at) == (
        1,
        True,
        80 * SECOND,
    )
    shock = NewsShock(0.01, 1.0, 0.0)
    log(engine.publish_news("quick-1", "ACME up", ("ACME",), shock, 30 * SECOND), 30 * SECOND)
    [news] = log.state.news
    assert (news.news_id, news.symbols, news.scenario_time, news.price_change) == (
        "quick-1", ("ACME",), 10 * SECOND, 0.01,
    )  # fmt: skip
    # A pause stops the clock; the round's end moves on by the pause when it runs again.
    log(engine.set_scenario(PAUSED, 40 * SECOND), 40 * SECOND)
    assert status.clock(60 * SECOND) == 20 * SECOND
    assert all(market.halted for market in log.state.symbols.values())
    log(engine.set_scenario(RUNNING, 50 * SECOND), 50 * SECOND)
    assert status.clock(55 * SECOND) == 25 * SECOND
    assert log.state.round_ends_at == 90 * SECOND
    assert not any(market.halted for market in log.state.symbols.values())
    log(engine.end_round(1, 60 * SECOND), 60 * SECOND)
    assert (log.state.round, log.state.round_open) == (1, False)
    # Loading again starts another event: rounds from 1, its own news.
    log(engine.set_scenario(LOADED, 70 * SECOND, name="quick", seed=7, digest="d", rounds=2),
        70 * SECOND)  # fmt: skip
    assert status.loaded_sequence > loaded_sequence
    assert (log.state.round, log.state.news, status.clock(80 * SECOND)) == (0, [], 0)
    assert "quick-1" in log.state.news_ids
