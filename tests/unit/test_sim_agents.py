"""The bots (data_svc/agents.py): pure decisions that keep to the exchange's grid and rules."""

from __future__ import annotations

import dataclasses
import math
import random

from hypothesis import event, given, settings
from hypothesis import strategies as st

from data_svc.agents import (
    AGENT_KINDS,
    AGENT_PARAMS,
    MAX_ORDER_QUANTITY,
    Agent,
    AgentView,
    CancelOrder,
    Limits,
    MarketMaker,
    MarketMakerParams,
    OpenOrder,
    OrderType,
    PlaceOrder,
    Side,
    SymbolView,
    TimeInForce,
    arrivals,
    build_bots,
    order_problems,
)
from data_svc.scenario import load_scenario, scenario_path

BUY, SELL = Side.BUY, Side.SELL


def market(**overrides: object) -> SymbolView:
    values = dict(
        symbol="ACME",
        tick_size="0.01",
        lot_size=1,
        tick_cash=100,
        best_bid=4998,
        bid_size=10,
        best_ask=5002,
        ask_size=10,
        last_price=5000,
        last_quantity=5,
        fair_value=5000.0,
        volatility=0.02,
        recent_trades=tuple(range(4980, 5000)),
        position=0,
        open_orders=(),
    )
    values.update(overrides)
    return SymbolView(**values)


SHORTING = Limits(short_limit=1000)


def view(symbol_view: SymbolView, cash: int = 10**12, limits: Limits = SHORTING) -> AgentView:
    return AgentView(
        now=600 * 10**9,
        decision_id="10.3",
        available_cash=cash,
        open_order_count=len(symbol_view.open_orders),
        limits=limits,
        markets=(symbol_view,),
    )


def maker(**params: object) -> MarketMaker:
    return MarketMaker("mm-ACME-1", "ACME", MarketMakerParams(**params), 1.0, (5, 5), 0)


def test_arrivals_are_a_pure_function_of_seed_agent_and_minute() -> None:
    first = arrivals(1, "noise-ACME-1", 0.5, 7)
    assert first == arrivals(1, "noise-ACME-1", 0.5, 7)
    assert first != arrivals(2, "noise-ACME-1", 0.5, 7)
    assert first != arrivals(1, "noise-ACME-2", 0.5, 7)
    assert all(7 * 60 * 10**9 <= arrival.time < 8 * 60 * 10**9 for arrival in first)
    assert [arrival.time for arrival in first] == sorted(arrival.time for arrival in first)
    assert first[0].rng().random() == first[0].rng().random()


def test_arrivals_come_at_the_configured_rate() -> None:
    counts = [len(arrivals(3, "value-ACME-1", 0.2, minute)) for minute in range(2000)]
    mean = sum(counts) / len(counts)
    variance = sum((count - mean) ** 2 for count in counts) / len(counts)
    print(f"arrivals: {mean:.2f} per minute at 0.2/s (Poisson: variance {variance:.2f})")
    assert abs(mean - 12) < 0.5
    assert abs(variance - 12) < 1.5


def test_market_maker_quotes_around_fair_value_on_both_sides() -> None:
    intents = maker(levels=2).decide(view(market()), random.Random(1))
    bids = sorted(i.price for i in intents if isinstance(i, PlaceOrder) and i.side == BUY)
    asks = sorted(i.price for i in intents if isinstance(i, PlaceOrder) and i.side == SELL)
    assert len(bids) == len(asks) == 2
    assert max(bids) < 5000 < min(asks)


def test_market_maker_spread_widens_with_volatility() -> None:
    def spread(volatility: float) -> int:
        bids, asks = maker().quotes(market(volatility=volatility))
        return asks[0] - bids[0]

    assert spread(0.0) < spread(0.02) < spread(0.08)


def test_market_maker_leans_against_its_inventory() -> None:
    mm = maker(max_inventory_lots=10, inventory_skew=2)
    flat_bids, flat_asks = mm.quotes(market())
    long_bids, long_asks = mm.quotes(market(position=50))
    short_bids, short_asks = mm.quotes(market(position=-50))
    assert long_asks[0] < flat_asks[0] and long_bids[0] < flat_bids[0]
    assert short_asks[0] > flat_asks[0] and short_bids[0] > flat_bids[0]


def test_market_maker_keeps_quotes_that_are_still_wanted() -> None:
    mm = maker(levels=1)
    bids, asks = mm.quotes(market())
    resting = (
        OpenOrder("o1", "c1", BUY, bids[0], 5, 0),
        OpenOrder("o2", "c2", SELL, asks[0] + 3, 5, 0),
    )
    intents = mm.decide(view(market(open_orders=resting)), random.Random(1))
    assert CancelOrder("o2") in intents
    assert CancelOrder("o1") not in intents
    placed = [intent for intent in intents if isinstance(intent, PlaceOrder)]
    assert [(order.side, order.price) for order in placed] == [(SELL, asks[0])]


def test_client_order_ids_are_derived_from_the_agent_and_the_decision() -> None:
    intents = maker(levels=2).decide(view(market()), random.Random(1))
    ids = [intent.client_order_id for intent in intents if isinstance(intent, PlaceOrder)]
    assert ids == [f"mm-ACME-1-10.3-{number}" for number in range(1, 5)]
    again = maker(levels=2).decide(view(market()), random.Random(1))
    assert again == intents


def test_bots_of_every_shipped_scenario_have_distinct_user_ids() -> None:
    for name in ("default", "calm", "volatile-news", "etf-arbitrage"):
        bots = build_bots(load_scenario(scenario_path(name)))
        ids = [bot.agent.agent_id for bot in bots]
        assert len(ids) == len(set(ids)) and all(len(user_id) <= 64 for user_id in ids)


def params_for(kind: str) -> st.SearchStrategy:
    """Any parameters the loader would accept for a kind (within its limits)."""
    fields = {}
    for field in dataclasses.fields(AGENT_PARAMS[kind]):
        low = field.metadata.get("minimum", field.metadata.get("above", 0))
        high = field.metadata.get("maximum", 50)
        if field.type in ("int", int):
            fields[field.name] = st.integers(int(math.ceil(low)), int(high))
        else:
            fields[field.name] = st.floats(low + (0.01 if "above" in field.metadata else 0), high)
    return st.fixed_dictionaries(fields).map(lambda values: AGENT_PARAMS[kind](**values))


@st.composite
def situations(draw: st.DrawFn) -> tuple[Agent, AgentView]:
    kind = draw(st.sampled_from(sorted(AGENT_KINDS)))
    lot_size = draw(st.sampled_from([1, 10, 100]))
    least = draw(st.integers(1, 20))
    target = draw(st.integers(0, 5000))
    agent = AGENT_KINDS[kind](
        f"{kind}-X-1",
        "X",
        draw(params_for(kind)),
        1.0,
        (least, least + draw(st.integers(0, 20))),
        target,
    )
    centre = draw(st.integers(1, 10**6))
    fair_value = max(0.5, centre * (1 + draw(st.floats(-0.02, 0.02))))
    bid = draw(st.one_of(st.integers(max(1, centre - 30), centre), st.just(0)))
    ask = draw(st.one_of(st.integers(max(bid, centre) + 1, centre + 30), st.just(0)))
    trend = draw(st.integers(-3, 3))
    recent = [
        max(1, centre + trend * index + draw(st.integers(-5, 5)))
        for index in range(draw(st.integers(0, 60)))
    ]
    limits = Limits(
        draw(st.sampled_from([0, 100, 20_000])),
        draw(st.sampled_from([0, 50, 2000])),
        draw(st.sampled_from([0, 1, 4, 50])),
    )
    open_orders = tuple(
        OpenOrder(
            f"o{number}",
            f"c{number}",
            draw(st.sampled_from([BUY, SELL])),
            max(1, centre + draw(st.integers(-50, 50))),
            lot_size * draw(st.integers(1, 50)),
            draw(st.integers(0, 600 * 10**9)),
        )
        for number in range(draw(st.integers(0, 6)))
    )
    symbol_view = market(
        symbol="X",
        lot_size=lot_size,
        tick_cash=draw(st.sampled_from([1, 10, 100, 1000])),
        best_bid=bid,
        bid_size=lot_size if bid else 0,
        best_ask=ask,
        ask_size=lot_size if ask else 0,
        fair_value=fair_value,
        volatility=draw(st.floats(0, 2)),
        recent_trades=tuple(recent),
        position=draw(
            st.one_of(st.integers(-500, 500).map(target.__add__), st.integers(-3000, 12_000))
        ),
        open_orders=open_orders,
    )
    cash = draw(st.one_of(st.just(10**13), st.integers(0, 10**13)))
    return agent, view(symbol_view, cash, limits)


@settings(max_examples=400, deadline=None)
@given(situation=situations(), seed=st.integers(0, 2**32))
def test_agents_keep_to_the_grid_and_to_what_they_can_back(
    situation: tuple[Agent, AgentView], seed: int
) -> None:
    """Whatever the market and the account, a bot's orders are on the tick and lot grid, and
    it never asks for more than its cash, position, short limit, position limit and open-order
    cap allow (counting what its cancels in the same decision free)."""
    agent, agent_view = situation
    symbol_view = agent_view.markets[0]
    limits = agent_view.limits
    intents = agent.decide(agent_view, random.Random(seed))
    event(f"{agent.kind} places {sum(isinstance(i, PlaceOrder) for i in intents)}")
    own = {order.order_id: order for order in symbol_view.open_orders}
    open_orders = dict(own)
    cash = agent_view.available_cash
    for intent in intents:
        if isinstance(intent, CancelOrder):
            order = open_orders.pop(intent.order_id)
            if order.side == BUY:
                cash += order.price * order.remaining * symbol_view.tick_cash
            continue
        assert isinstance(intent, PlaceOrder)
        assert not order_problems(intent, symbol_view), (
            intent,
            order_problems(intent, symbol_view),
        )
        assert intent.symbol == "X"
        assert 1 <= intent.quantity <= MAX_ORDER_QUANTITY
        if intent.type == OrderType.MARKET:
            assert intent.price == 0 and intent.time_in_force == TimeInForce.IOC
        else:
            assert isinstance(intent.price, int) and intent.price >= 1
        if limits.max_open_orders:
            assert len(open_orders) < limits.max_open_orders
        buying = sum(o.remaining for o in open_orders.values() if o.side == BUY)
        selling = sum(o.remaining for o in open_orders.values() if o.side == SELL)
        position = symbol_view.position
        if intent.side == BUY:
            unit = intent.price if intent.type == OrderType.LIMIT else symbol_view.best_ask
            needed = intent.quantity * unit * symbol_view.tick_cash
            assert needed <= cash
            cash -= needed
            if limits.position_limit:
                assert position + buying + intent.quantity <= limits.position_limit
        else:
            assert intent.quantity <= position - selling + limits.short_limit
            if limits.position_limit:
                assert position - selling - intent.quantity >= -limits.position_limit
        open_orders[intent.client_order_id] = OpenOrder(
            intent.client_order_id,
            intent.client_order_id,
            intent.side,
            intent.price,
            intent.quantity,
            agent_view.now,
        )
