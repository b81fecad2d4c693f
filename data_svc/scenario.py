"""Scenarios: what a simulated market is made of, as frozen values loaded from YAML.

A scenario names the instruments and how their fair values move, the session schedule, what
participants start with, the rules, the bots and the news timeline (docs/simulator.md describes
every field). Loading validates everything at once, so a mistake is found when the file is
read, not an hour into an event: each error names the file, the line, the field and what is
allowed. Unknown keys are errors too, so a misspelt field never silently falls back to its
default. This module reads the file it is given (and a bars CSV it names); nothing else here
does I/O.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import yaml

from data_svc.agents import AGENT_PARAMS
from mockex.ranking import METRICS

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"
CASH_UNITS_PER_CURRENCY = 10_000
"""As the engine keeps cash (engine_svc.accounts): integer units of 0.0001."""
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.]{0,11}$")
"""The gateway's rule for symbols (gateway_svc/validation.py)."""
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PROCESS_KINDS = ("gbm", "mean_reverting", "bars")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names file, line and field."""


# ---- the scenario ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Jumps:
    """Poisson jumps of the log fair value: `rate_per_hour` on average, each N(mean, std)."""

    rate_per_hour: float = 0.0
    mean: float = 0.0
    std: float = 0.0

    @property
    def variance_per_hour(self) -> float:
        return self.rate_per_hour * (self.mean**2 + self.std**2)


@dataclass(frozen=True, slots=True)
class Regimes:
    """A hidden calm/turbulent Markov state: turbulent volatility is `turbulent_multiplier`
    times the calm one; each state lasts its mean number of minutes (exponentially)."""

    turbulent_multiplier: float = 1.0
    calm_minutes: float = 20.0
    turbulent_minutes: float = 5.0

    @property
    def turbulent_share(self) -> float:
        """The long-run fraction of time spent turbulent."""
        return self.turbulent_minutes / (self.calm_minutes + self.turbulent_minutes)


@dataclass(frozen=True, slots=True)
class PriceProcess:
    """How one instrument's fair value moves.

    `volatility` is the long-run standard deviation of log returns over one hour, regimes and
    jumps included (the diffusion gets what the jumps leave). `gbm` adds `drift` per hour;
    `mean_reverting` pulls the log value toward log(`mean_price`) at `mean_reversion` per hour
    (ABIDES' sparse mean-reverting oracle: its jumps are the rare shocks, and they fade); `bars`
    interpolates the closes of a CSV file, and `volatility` only tells the bots how wide to
    quote.
    """

    kind: str = "gbm"
    volatility: float = 0.02
    drift: float = 0.0
    mean_reversion: float = 0.0
    mean_price: float = 0.0
    jumps: Jumps = Jumps()
    regimes: Regimes = Regimes()
    bars: tuple[tuple[float, float], ...] = ()
    """(seconds of scenario time, close price), strictly increasing in time."""


@dataclass(frozen=True, slots=True)
class Basket:
    """An ETF: its fair value is `shares` of each component per unit, and participants create
    and redeem units for those shares at the exchange (POST /orders/convert), paying
    `conversion_fee` (currency, flat per request) each time. AddSymbolRequest takes both as
    `basket` and `conversion_fee`."""

    shares: tuple[tuple[str, int], ...]
    """Whole shares of each component per unit, in the file's order."""
    conversion_fee: float = 0.0


@dataclass(frozen=True, slots=True)
class Pair:
    """One value on two symbols (ADR-style): this symbol is worth `ratio` units of `of`."""

    of: str
    ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    tick_size: str = "0.01"
    """As the engine takes it: a decimal string, a whole number of cash units."""
    lot_size: int = 1
    start_price: float = 0.0
    """Fair value at time 0, in currency; for linked instruments, derived from their links."""
    process: PriceProcess | None = None
    basket: Basket | None = None
    pair: Pair | None = None

    @property
    def tick_value(self) -> float:
        return float(self.tick_size)

    @property
    def tick_cash(self) -> int:
        """Cash units one tick of one share is worth (the engine's tick_cash)."""
        return int(Decimal(self.tick_size) * CASH_UNITS_PER_CURRENCY)


@dataclass(frozen=True, slots=True)
class Round:
    name: str
    length_seconds: float
    break_seconds: float = 0.0
    """The pause after this round, before the next one opens."""


@dataclass(frozen=True, slots=True)
class Session:
    """One round placed in scenario time: the market is open from opens_at to closes_at."""

    index: int
    name: str
    opens_at: float
    closes_at: float


@dataclass(frozen=True, slots=True)
class ScheduledRound:
    """A round of the event placed in scenario time (numbered from 1 over repeats)."""

    number: int
    name: str
    opens_at: float
    closes_at: float
    reset: bool
    """Participants start it afresh (reset_between_rounds, from the second round on)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    rounds: tuple[Round, ...]
    reset_between_rounds: bool = False
    """Participants start each round afresh with their starting cash and positions."""
    repeat: bool = False
    """After the last round (and its break) the rounds start over, for ever."""

    @property
    def cycle_seconds(self) -> float:
        """One pass over the rounds, breaks included."""
        return sum(round_.length_seconds + round_.break_seconds for round_ in self.rounds)

    def round_at(self, time_seconds: float) -> ScheduledRound | None:
        """The round open at this time of the scenario (None in a break, or after the end of
        a schedule that does not repeat)."""
        cycle, within = self._cycle_of(time_seconds)
        if cycle is None:
            return None
        session = self.session_at(within)
        if session is None:
            return None
        return self._scheduled(cycle, session)

    def next_round_after(self, time_seconds: float) -> ScheduledRound | None:
        """The first round opening after this time, if any."""
        cycle, within = self._cycle_of(time_seconds)
        if cycle is None:
            return None
        for session in self.sessions():
            if session.opens_at > within:
                return self._scheduled(cycle, session)
        if self.repeat:
            return self._scheduled(cycle + 1, self.sessions()[0])
        return None

    def _cycle_of(self, time_seconds: float) -> tuple[int | None, float]:
        if not self.repeat:
            return (0, time_seconds) if time_seconds < self.end_seconds else (None, 0.0)
        cycle = int(time_seconds // self.cycle_seconds)
        return cycle, time_seconds - cycle * self.cycle_seconds

    def _scheduled(self, cycle: int, session: Session) -> ScheduledRound:
        number = cycle * len(self.rounds) + session.index + 1
        start = cycle * self.cycle_seconds
        return ScheduledRound(
            number,
            session.name,
            start + session.opens_at,
            start + session.closes_at,
            self.reset_between_rounds and number > 1,
        )

    def sessions(self) -> tuple[Session, ...]:
        sessions = []
        opens_at = 0.0
        for index, round_ in enumerate(self.rounds):
            closes_at = opens_at + round_.length_seconds
            sessions.append(Session(index, round_.name, opens_at, closes_at))
            opens_at = closes_at + round_.break_seconds
        return tuple(sessions)

    def session_at(self, time_seconds: float) -> Session | None:
        """The round open at this time of the scenario, or None in a break or after the end."""
        for session in self.sessions():
            if session.opens_at <= time_seconds < session.closes_at:
                return session
        return None

    @property
    def end_seconds(self) -> float:
        """When the last round closes."""
        return self.sessions()[-1].closes_at


@dataclass(frozen=True, slots=True)
class Participants:
    cash: float = 100_000.0
    positions: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Rules:
    position_limit: int = 0
    """Largest position, long or short, per symbol (0: none)."""
    max_open_orders: int = 0
    """Open orders per user (0: none); the engine enforces it."""
    message_rate_per_second: int = 0
    """Orders and cancels per second per user (0: none), a token bucket as the gateway's."""
    message_burst: int = 0
    """The bucket's size; 0 takes twice the rate."""
    short_limit: int = 0
    """How far below zero a position may go per symbol; the engine enforces it."""
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = 0.0
    ranking: str = "pnl"
    """What the leaderboard and the reports rank by: a name of mockex.ranking.METRICS."""


@dataclass(frozen=True, slots=True)
class BotGroup:
    """`count` bots of one kind on each of `symbols`, each its own user."""

    name: str
    kind: str
    count: int
    symbols: tuple[str, ...]
    rate: float
    """Decisions per second of each bot (Poisson arrivals)."""
    order_lots: tuple[int, int]
    """Order sizes, uniformly between these numbers of lots."""
    cash: float
    position: int
    """Starting position (shares) in the bot's symbol; it is also the bot's target."""
    params: Any
    """The kind's parameters (data_svc.agents: MarketMakerParams, NoiseTraderParams...)."""


@dataclass(frozen=True, slots=True)
class News:
    """A headline at a time; participants see only the headline and the symbols."""

    time_seconds: float
    headline: str
    symbols: tuple[str, ...]
    price_change: float = 0.0
    """Relative jump of fair value: -0.05 is 5% down, permanent."""
    volatility_multiplier: float = 1.0
    duration_seconds: float = 0.0
    """How long the volatility multiplier lasts."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    step_seconds: float
    instruments: tuple[Instrument, ...]
    schedule: Schedule
    participants: Participants
    rules: Rules
    bots: tuple[BotGroup, ...]
    news: tuple[News, ...]
    digest: str = ""
    """SHA-256 of the file and the bars files it names: a restart can tell the scenario
    changed under it."""

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(instrument.symbol for instrument in self.instruments)

    def instrument(self, symbol: str) -> Instrument:
        for instrument in self.instruments:
            if instrument.symbol == symbol:
                return instrument
        raise KeyError(symbol)


# ---- loading ----------------------------------------------------------------------------------


def scenario_path(name: str) -> Path:
    """The shipped scenario called `name` (scenarios/<name>.yaml)."""
    return SCENARIOS_DIR / f"{name}.yaml"


def shipped_scenarios() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in SCENARIOS_DIR.glob("*.yaml")))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; a bars file it names is read relative to it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc.strerror}") from exc
    return parse_scenario(text, str(path), path.parent)


def parse_scenario(text: str, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Validate scenario YAML; `source` is the name errors give, `base_dir` where bars are."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark else ""
        raise ScenarioError(f"{source}{line}: not valid YAML: {exc.problem}") from exc
    finally:
        loader.dispose()
    reader = _Reader(source, base_dir or Path("."))
    if root is None:
        raise ScenarioError(f"{source}: the file is empty; a scenario needs instruments")
    reader.digest.update(text.encode())
    scenario = reader.scenario(reader.fields(root, ""), Path(source).stem)
    return dataclasses.replace(scenario, digest=reader.digest.hexdigest())


_MISSING: Any = object()


class _Fields:
    """One YAML mapping being read: remembers which keys were asked for, so `finish` can call
    any other key unknown and list the allowed ones."""

    def __init__(self, reader: _Reader, node: yaml.MappingNode, path: str) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self.entries: dict[str, yaml.Node] = {}
        self.key_nodes: dict[str, yaml.Node] = {}
        self.asked: list[str] = []
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
                reader.fail(key_node, f"{self.path or 'the scenario'} has a key that is no name")
            if key in self.entries:
                first = self.key_nodes[key].start_mark.line + 1
                reader.fail(key_node, f"{self.at(key)} is given twice (first on line {first})")
            self.entries[key] = value_node
            self.key_nodes[key] = key_node

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str) -> yaml.Node | None:
        self.asked.append(key)
        node = self.entries.get(key)
        if node is not None and node.tag == "tag:yaml.org,2002:null":
            return None
        return node

    def get(self, key: str, parse: Callable[[yaml.Node, str], Any], default: Any = _MISSING) -> Any:
        node = self.take(key)
        if node is None:
            if default is _MISSING:
                self.reader.fail(self.node, f"{self.at(key)} is required")
            return default
        return parse(node, self.at(key))

    def has(self, key: str) -> bool:
        return key in self.entries

    def finish(self, what: str = "") -> None:
        for key, key_node in self.key_nodes.items():
            if key not in self.asked:
                allowed = ", ".join(self.asked)
                owner = what or (f"{self.path}" if self.path else "a scenario")
                self.reader.fail(
                    key_node, f"{self.at(key)} is not a field of {owner}; allowed: {allowed}"
                )


class _Reader:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.symbols: tuple[str, ...] = ()
        self.linked: frozenset[str] = frozenset()
        """Symbols whose fair value comes from a basket or a pair."""
        self.lot_sizes: dict[str, int] = {}
        """The lot size of each instrument read so far (an ETF's components come before it)."""
        self.digest = hashlib.sha256()

    # ---- errors and scalars ---------------------------------------------------------------

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        raise ScenarioError(f"{self.source} line {node.start_mark.line + 1}: {message}")

    def expected(self, node: yaml.Node, path: str, what: str) -> NoReturn:
        self.fail(node, f"{path} must be {what}, got {_shown(node)}")

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return _MISSING
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node)
        except yaml.constructor.ConstructorError:
            return node.value
        finally:
            loader.dispose()

    def number(
        self,
        node: yaml.Node,
        path: str,
        *,
        minimum: float | None = None,
        above: float | None = None,
        maximum: float | None = None,
        what: str = "",
    ) -> float:
        value = self.scalar(node)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        ok = ok and (minimum is None or value >= minimum) and (above is None or value > above)
        ok = ok and (maximum is None or value <= maximum)
        if not ok:
            self.expected(node, path, what or _range_words("a number", minimum, above, maximum))
        return float(value)

    def integer(
        self, node: yaml.Node, path: str, *, minimum: int | None = None, what: str = ""
    ) -> int:
        value = self.scalar(node)
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (minimum is not None and value < minimum):
            self.expected(node, path, what or _range_words("a whole number", minimum, None, None))
        return int(value)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        value = self.scalar(node)
        if not isinstance(value, bool):
            self.expected(node, path, "true or false")
        return value

    def text(self, node: yaml.Node, path: str) -> str:
        value = self.scalar(node)
        if not isinstance(value, str) or not value.strip():
            self.expected(node, path, "a non-empty string")
        return value

    def choice(self, node: yaml.Node, path: str, allowed: tuple[str, ...]) -> str:
        value = self.scalar(node)
        if value not in allowed:
            self.expected(node, path, "one of " + ", ".join(allowed))
        return value

    def name(self, node: yaml.Node, path: str) -> str:
        value = self.scalar(node)
        if not isinstance(value, str) or not NAME_PATTERN.match(value):
            what = "a name of lower-case letters, digits, - and _ (at most 32)"
            self.expected(node, path, what)
        return value

    def symbol(self, node: yaml.Node, path: str) -> str:
        """A symbol of the scenario's instruments."""
        value = self.scalar(node)
        if value not in self.symbols:
            self.expected(node, path, "one of the instruments' symbols: " + ", ".join(self.symbols))
        return value

    def fields(self, node: yaml.Node, path: str) -> _Fields:
        if not isinstance(node, yaml.MappingNode):
            self.expected(node, path or "the scenario", "a mapping of fields")
        return _Fields(self, node, path)

    def items(self, node: yaml.Node, path: str, *, non_empty: bool = False) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.expected(node, path, "a list")
        if non_empty and not node.value:
            self.expected(node, path, "a list of at least one item")
        return node.value

    def symbol_list(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        symbols = tuple(
            self.symbol(item, f"{path}[{index}]")
            for index, item in enumerate(self.items(node, path, non_empty=True))
        )
        for index, symbol in enumerate(symbols):
            if symbol in symbols[:index]:
                self.fail(node.value[index], f"{path}[{index}]: {symbol} is listed twice")
        return symbols

    def symbol_mapping(self, node: yaml.Node, path: str) -> Iterator[tuple[str, yaml.Node, str]]:
        """(symbol, value node, path) of a mapping keyed by symbols."""
        fields = self.fields(node, path)
        for symbol, value_node in fields.entries.items():
            if symbol not in self.symbols:
                what = "one of the instruments' symbols: " + ", ".join(self.symbols)
                self.expected(fields.key_nodes[symbol], f"{path} key", what)
            yield symbol, value_node, f"{path}.{symbol}"

    # ---- sections ---------------------------------------------------------------------------

    def scenario(self, top: _Fields, default_name: str) -> Scenario:
        name = top.get("name", self.name, default_name)
        description = top.get("description", self.text, "")
        step_seconds = top.get(
            "step_seconds", lambda n, p: self.number(n, p, above=0, maximum=60), 1.0
        )
        instruments_node = top.take("instruments")
        if instruments_node is None:
            self.fail(top.node, "instruments is required: a list of at least one instrument")
        self.symbols = self.declared_symbols(instruments_node)
        instruments = tuple(
            self.instrument(self.fields(item, f"instruments[{index}]"))
            for index, item in enumerate(self.items(instruments_node, "instruments"))
        )
        schedule = top.get("schedule", lambda n, p: self.schedule(self.fields(n, p)))
        participants = top.get(
            "participants", lambda n, p: self.participants(self.fields(n, p)), Participants()
        )
        rules = top.get("rules", lambda n, p: self.rules(self.fields(n, p)), Rules())
        bots_node = top.take("bots")
        bots = () if bots_node is None else self.bots(bots_node, participants, rules)
        news_node = top.take("news")
        news = () if news_node is None else self.news(news_node)
        top.finish()
        return Scenario(
            name,
            description,
            step_seconds,
            instruments,
            schedule,
            participants,
            rules,
            bots,
            news,
        )

    def declared_symbols(self, node: yaml.Node) -> tuple[str, ...]:
        """Every instrument's symbol, checked, before anything refers to one."""
        symbols: list[str] = []
        linked: list[str] = []
        for index, item in enumerate(self.items(node, "instruments", non_empty=True)):
            fields = self.fields(item, f"instruments[{index}]")
            symbol_node = fields.take("symbol")
            if symbol_node is None:
                self.fail(item, f"instruments[{index}].symbol is required")
            value = self.scalar(symbol_node)
            if not isinstance(value, str) or not SYMBOL_PATTERN.match(value):
                what = (
                    "a symbol: an upper-case letter, then up to 11 upper-case letters, digits or ."
                )
                self.expected(symbol_node, f"instruments[{index}].symbol", what)
            if value in symbols:
                self.fail(symbol_node, f"instruments[{index}].symbol {value} is listed twice")
            symbols.append(value)
            if fields.has("basket") or fields.has("pair"):
                linked.append(value)
        self.linked = frozenset(linked)
        return tuple(symbols)

    def instrument(self, fields: _Fields) -> Instrument:
        path = fields.path
        symbol = fields.get("symbol", self.text)
        tick_size = fields.get("tick_size", self.tick_size, "0.01")
        lot_size = fields.get("lot_size", lambda n, p: self.integer(n, p, minimum=1), 1)
        links = [key for key in ("process", "basket", "pair") if fields.has(key)]
        if len(links) != 1:
            given = " and ".join(links) if links else "none"
            self.fail(
                fields.node, f"{path} needs exactly one of process, basket or pair (given: {given})"
            )
        process = basket = pair = None
        start_price = 0.0
        if links[0] == "process":
            process = fields.get("process", lambda n, p: self.process(self.fields(n, p)))
            if process.kind == "bars":
                start_price = process.bars[0][1]
                if fields.has("start_price"):
                    message = f"{path}.start_price comes from the bars file; leave it out"
                    self.fail(fields.entries["start_price"], message)
            else:
                start_price = fields.get("start_price", lambda n, p: self.number(n, p, above=0))
            if process.kind == "mean_reverting" and not process.mean_price:
                process = dataclasses.replace(process, mean_price=start_price)
        else:
            if fields.has("start_price"):
                message = f"{path}.start_price is derived from its {links[0]}; leave it out"
                self.fail(fields.entries["start_price"], message)
            if links[0] == "basket":
                fee = fields.get("conversion_fee", self.conversion_fee, 0.0)
                basket = fields.get("basket", lambda n, p: self.basket(n, p, symbol, lot_size))
                basket = dataclasses.replace(basket, conversion_fee=fee)
            else:
                pair = fields.get("pair", lambda n, p: self.pair(self.fields(n, p), symbol))
        if basket is None and fields.has("conversion_fee"):
            message = f"{path}.conversion_fee applies only to an instrument with a basket (an ETF)"
            self.fail(fields.key_nodes["conversion_fee"], message)
        fields.finish("an instrument")
        self.lot_sizes[symbol] = lot_size
        if process is not None:
            ticks = start_price / float(tick_size)
            if round(ticks) < 1:
                message = f"{path}.start_price {start_price:g} is less than one tick ({tick_size})"
                self.fail(fields.node, message)
        return Instrument(symbol, tick_size, lot_size, start_price, process, basket, pair)

    def tick_size(self, node: yaml.Node, path: str) -> str:
        value = self.scalar(node)
        what = "a positive number, a multiple of 0.0001"
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.expected(node, path, what)
        try:
            decimal = Decimal(str(value))
        except InvalidOperation:
            self.expected(node, path, what)
        if not decimal.is_finite() or decimal <= 0 or (decimal * CASH_UNITS_PER_CURRENCY) % 1:
            self.expected(node, path, what)
        return format(decimal.normalize(), "f")

    def process(self, fields: _Fields) -> PriceProcess:
        path = fields.path
        kind = fields.get("kind", lambda n, p: self.choice(n, p, PROCESS_KINDS), "gbm")
        volatility = fields.get("volatility", lambda n, p: self.number(n, p, minimum=0), 0.02)
        drift = mean_reversion = mean_price = 0.0
        jumps = Jumps()
        regimes = Regimes()
        bars: tuple[tuple[float, float], ...] = ()
        if kind == "bars":
            bars = fields.get("file", self.bars)
        else:
            if kind == "gbm":
                drift = fields.get("drift", self.number, 0.0)
            else:
                mean_reversion = fields.get(
                    "mean_reversion", lambda n, p: self.number(n, p, above=0), 1.0
                )
                mean_price = fields.get("mean_price", lambda n, p: self.number(n, p, above=0), 0.0)
            jumps = fields.get("jumps", lambda n, p: self.jumps(self.fields(n, p)), Jumps())
            regimes = fields.get("regimes", lambda n, p: self.regimes(self.fields(n, p)), Regimes())
            if jumps.variance_per_hour >= volatility**2 and volatility > 0:
                message = (
                    f"{path}.jumps: rate_per_hour x (mean^2 + std^2) = "
                    f"{jumps.variance_per_hour:.6g} per hour must be less than volatility^2 = "
                    f"{volatility**2:.6g}: the jumps would leave nothing for the diffusion"
                )
                self.fail(fields.node, message)
        fields.finish(f"a {kind} process")
        return PriceProcess(
            kind, volatility, drift, mean_reversion, mean_price, jumps, regimes, bars
        )

    def jumps(self, fields: _Fields) -> Jumps:
        rate = fields.get("rate_per_hour", lambda n, p: self.number(n, p, minimum=0), 0.0)
        mean = fields.get("mean", self.number, 0.0)
        std = fields.get("std", lambda n, p: self.number(n, p, minimum=0), 0.0)
        fields.finish("jumps")
        return Jumps(rate, mean, std)

    def regimes(self, fields: _Fields) -> Regimes:
        multiplier = fields.get(
            "turbulent_multiplier", lambda n, p: self.number(n, p, minimum=1), 1.0
        )
        calm = fields.get("calm_minutes", lambda n, p: self.number(n, p, above=0), 20.0)
        turbulent = fields.get("turbulent_minutes", lambda n, p: self.number(n, p, above=0), 5.0)
        fields.finish("regimes")
        return Regimes(multiplier, calm, turbulent)

    def bars(self, node: yaml.Node, path: str) -> tuple[tuple[float, float], ...]:
        name = self.text(node, path)
        file = self.base_dir / name
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            self.fail(node, f"{path}: cannot read bars file {file}: {exc.strerror}")
        self.digest.update(text.encode())
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or [cell.strip() for cell in rows[0]] != ["time", "close"]:
            raise ScenarioError(f"{file} line 1: a bars file starts with the header time,close")
        bars: list[tuple[float, float]] = []
        for line, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                time_seconds, close = (float(cell) for cell in row)
            except ValueError:
                time_seconds = close = math.nan
            ok = len(row) == 2 and math.isfinite(time_seconds) and math.isfinite(close)
            ok = ok and time_seconds >= 0 and close > 0
            if not ok:
                raise ScenarioError(
                    f"{file} line {line}: a bar is time (seconds, 0 or more) and close (a "
                    f"positive price), got {','.join(row)!r}"
                )
            if bars and time_seconds <= bars[-1][0]:
                raise ScenarioError(
                    f"{file} line {line}: times must increase, got {time_seconds:g} after "
                    f"{bars[-1][0]:g}"
                )
            bars.append((time_seconds, close))
        if not bars:
            raise ScenarioError(f"{file}: a bars file needs at least one bar")
        return tuple(bars)

    def basket(self, node: yaml.Node, path: str, symbol: str, lot_size: int) -> Basket:
        """Whole shares, as the exchange converts them: listed after its components, and each
        component's shares per lot of the ETF a whole number of that component's lots."""
        shares = []
        for component, value_node, at in self.symbol_mapping(node, path):
            self.check_underlying(value_node, at, component, symbol)
            if component not in self.lot_sizes:
                message = f"{at}: list {component} before {symbol} (an ETF after its components)"
                self.fail(value_node, message)
            what = "a whole number of shares, 1 or more (ETF units convert to whole shares)"
            count = self.integer(value_node, at, minimum=1, what=what)
            component_lot = self.lot_sizes[component]
            if count * lot_size % component_lot:
                message = (
                    f"{at}: {count} shares per unit times the ETF's lot_size {lot_size} must be "
                    f"whole lots of {component} (lot_size {component_lot})"
                )
                self.fail(value_node, message)
            shares.append((component, count))
        if not shares:
            self.expected(node, path, "a mapping of at least one component symbol to shares")
        return Basket(tuple(shares))

    def conversion_fee(self, node: yaml.Node, path: str) -> float:
        what = "a number of 0 or more (currency), a multiple of 0.0001"
        value = self.number(node, path, minimum=0, what=what)
        if (Decimal(str(value)) * CASH_UNITS_PER_CURRENCY) % 1:
            self.expected(node, path, what)
        return value

    def pair(self, fields: _Fields, symbol: str) -> Pair:
        of = fields.get("of", self.symbol)
        self.check_underlying(fields.entries["of"], f"{fields.path}.of", of, symbol)
        ratio = fields.get("ratio", lambda n, p: self.number(n, p, above=0), 1.0)
        fields.finish("a pair")
        return Pair(of, ratio)

    def check_underlying(self, node: yaml.Node, path: str, underlying: str, symbol: str) -> None:
        """A link's underlying must have a fair value of its own (a process, not a link)."""
        if underlying == symbol:
            self.fail(node, f"{path}: {symbol} cannot be linked to itself")
        if underlying in self.linked:
            message = f"{path}: {underlying} is itself a basket or a pair; link to primary symbols"
            self.fail(node, message)

    def schedule(self, fields: _Fields) -> Schedule:
        rounds_node = fields.take("rounds")
        if rounds_node is None:
            self.fail(fields.node, "schedule.rounds is required: a list of at least one round")
        rounds = tuple(
            self.round(self.fields(item, f"schedule.rounds[{index}]"), index)
            for index, item in enumerate(self.items(rounds_node, "schedule.rounds", non_empty=True))
        )
        reset = fields.get("reset_between_rounds", self.boolean, False)
        repeat = fields.get("repeat", self.boolean, False)
        fields.finish("the schedule")
        return Schedule(rounds, reset, repeat)

    def round(self, fields: _Fields, index: int) -> Round:
        name = fields.get("name", self.text, f"Round {index + 1}")
        length = fields.get("length_seconds", lambda n, p: self.number(n, p, above=0))
        pause = fields.get("break_seconds", lambda n, p: self.number(n, p, minimum=0), 0.0)
        fields.finish("a round")
        return Round(name, length, pause)

    def participants(self, fields: _Fields) -> Participants:
        cash = fields.get("cash", lambda n, p: self.number(n, p, minimum=0), 100_000.0)
        positions_node = fields.take("positions")
        positions = ()
        if positions_node is not None:
            positions = tuple(
                (symbol, self.integer(value_node, at, minimum=0))
                for symbol, value_node, at in self.symbol_mapping(
                    positions_node, fields.at("positions")
                )
            )
        fields.finish("participants")
        return Participants(cash, positions)

    def rules(self, fields: _Fields) -> Rules:
        def count(node: yaml.Node, path: str) -> int:
            return self.integer(node, path, minimum=0)

        def fee(node: yaml.Node, path: str) -> float:
            return self.number(node, path, minimum=-100, maximum=100)

        rules = Rules(
            position_limit=fields.get("position_limit", count, 0),
            max_open_orders=fields.get("max_open_orders", count, 0),
            message_rate_per_second=fields.get("message_rate_per_second", count, 0),
            message_burst=fields.get("message_burst", count, 0),
            short_limit=fields.get("short_limit", count, 0),
            maker_fee_bps=fields.get("maker_fee_bps", fee, 0.0),
            taker_fee_bps=fields.get("taker_fee_bps", fee, 0.0),
            ranking=fields.get("ranking", lambda n, p: self.choice(n, p, tuple(METRICS)), "pnl"),
        )
        fields.finish("the rules")
        return rules

    def bots(
        self, node: yaml.Node, participants: Participants, rules: Rules
    ) -> tuple[BotGroup, ...]:
        groups: list[BotGroup] = []
        for index, item in enumerate(self.items(node, "bots")):
            fields = self.fields(item, f"bots[{index}]")
            group = self.bot_group(fields, participants, rules)
            for earlier in groups:
                if earlier.name == group.name:
                    message = (
                        f"bots[{index}].name: two bot groups are called {group.name}; give each "
                        "a name of its own"
                    )
                    self.fail(item, message)
            groups.append(group)
        return tuple(groups)

    def bot_group(self, fields: _Fields, participants: Participants, rules: Rules) -> BotGroup:
        path = fields.path
        kind = fields.get("kind", lambda n, p: self.choice(n, p, tuple(AGENT_PARAMS)))
        name = fields.get("name", self.name, kind)
        count = fields.get("count", lambda n, p: self.integer(n, p, minimum=0), 1)
        tradable = tuple(self.symbols)
        symbols = fields.get("symbols", self.symbol_list, tradable)
        rate = fields.get("rate", lambda n, p: self.number(n, p, above=0, maximum=1000))
        order_lots = fields.get("order_lots", self.lots, (1, 1))
        cash = fields.get("cash", lambda n, p: self.number(n, p, minimum=0), participants.cash)
        position = fields.get("position", lambda n, p: self.integer(n, p, minimum=0), 0)
        params_type = AGENT_PARAMS[kind]
        params = fields.get(
            "params", lambda n, p: self.params(self.fields(n, p), params_type, kind), params_type()
        )
        fields.finish("a bot group")
        if rules.position_limit and position > rules.position_limit:
            node = fields.entries["position"]
            limit = rules.position_limit
            message = f"{path}.position {position} is above the rules' position_limit {limit}"
            self.fail(node, message)
        quotes = getattr(params, "levels", 0) * 2
        if rules.max_open_orders and quotes > rules.max_open_orders:
            message = (
                f"{path}.params.levels: {quotes} quotes exceed the rules' max_open_orders "
                f"{rules.max_open_orders}"
            )
            self.fail(fields.node, message)
        return BotGroup(name, kind, count, symbols, rate, order_lots, cash, position, params)

    def lots(self, node: yaml.Node, path: str) -> tuple[int, int]:
        what = "[least, most] lots per order, whole numbers from 1 with least <= most"
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
            self.expected(node, path, what)
        least, most = (self.integer(item, path, minimum=1, what=what) for item in node.value)
        if least > most:
            self.expected(node, path, what)
        return least, most

    def params(self, fields: _Fields, params_type: type, kind: str) -> Any:
        """A kind's parameters: each field of its dataclass, checked by the field's metadata."""
        values = {}
        for field in dataclasses.fields(params_type):
            limits = field.metadata
            if field.type in ("int", int):

                def parse(node: yaml.Node, path: str, limits: Any = limits) -> Any:
                    return self.integer(node, path, minimum=limits.get("minimum"))

            else:

                def parse(node: yaml.Node, path: str, limits: Any = limits) -> Any:
                    return self.number(
                        node,
                        path,
                        minimum=limits.get("minimum"),
                        above=limits.get("above"),
                        maximum=limits.get("maximum"),
                    )

            values[field.name] = fields.get(field.name, parse, field.default)
        fields.finish(f"the {kind} parameters")
        return params_type(**values)

    def news(self, node: yaml.Node) -> tuple[News, ...]:
        items = []
        for index, item in enumerate(self.items(node, "news")):
            fields = self.fields(item, f"news[{index}]")
            time_seconds = fields.get("time_seconds", lambda n, p: self.number(n, p, minimum=0))
            headline = fields.get("headline", self.text)
            symbols = fields.get("symbols", self.symbol_list, ())
            price_change = fields.get(
                "price_change", lambda n, p: self.number(n, p, above=-1, maximum=10), 0.0
            )
            multiplier = fields.get(
                "volatility_multiplier", lambda n, p: self.number(n, p, above=0, maximum=100), 1.0
            )
            duration = fields.get(
                "duration_seconds", lambda n, p: self.number(n, p, minimum=0), 0.0
            )
            fields.finish("a news item")
            if (price_change or multiplier != 1) and not symbols:
                self.fail(item, f"news[{index}] moves prices, so it needs the symbols it moves")
            if multiplier != 1 and not duration:
                message = f"news[{index}].duration_seconds is required with a volatility_multiplier"
                self.fail(item, message)
            items.append(News(time_seconds, headline, symbols, price_change, multiplier, duration))
        return tuple(sorted(items, key=lambda news: news.time_seconds))


def _range_words(
    noun: str, minimum: float | None, above: float | None, maximum: float | None
) -> str:
    if above == 0 and minimum is None and maximum is None:
        return f"a positive {noun.removeprefix('a ')}"
    words = []
    if minimum == 0 and above is None:
        words.append("0 or more")
    elif minimum is not None:
        words.append(f"at least {minimum:g}")
    if above is not None:
        words.append(f"above {above:g}")
    if maximum is not None:
        words.append(f"at most {maximum:g}")
    return noun + (" " + " and ".join(words) if words else "")


def _shown(node: yaml.Node) -> str:
    """A value as the error shows it: strings quoted, short lists of scalars in full."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        if len(node.value) <= 4 and all(isinstance(item, yaml.ScalarNode) for item in node.value):
            return "[" + ", ".join(_shown(item) for item in node.value) + "]"
        return "a list"
    if node.tag == "tag:yaml.org,2002:str":
        return json.dumps(node.value)
    return node.value or "nothing"
