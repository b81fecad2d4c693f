"""Composition root of data_svc: the log follower, the gateway client, the scenario runner and
the gRPC server the gateway's admin API calls to load scenarios.

The log decides what the simulator does: it follows the scenario the log names (loaded by an
organizer, or by this process at start from MOCKEX_SCENARIO when the log has none yet), from
where the log's clock says it is.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from data_svc.config import SimulatorConfig
from data_svc.gateway import GatewayClient
from data_svc.log_follower import LogFollower
from data_svc.market import LOADED, PAUSED, RUNNING, STOPPED, ExchangeState
from data_svc.prices import FairValues
from data_svc.runner import ScenarioRunner, SimulatorStats
from data_svc.scenario import Scenario, ScenarioError, load_scenario
from data_svc.servicer import ScenarioNotFound, SimulatorServicer
from exchange.internal.v1 import simulator_pb2, simulator_pb2_grpc
from exchange.v1 import admin_pb2, competition_pb2, market_pb2
from mockex.grpc_server import GrpcServer, start_grpc_server
from mockex.participant import ticks_to_price
from mockex.ranking import METRICS

log = logging.getLogger(__name__)

SERVICE_NAME = simulator_pb2.DESCRIPTOR.services_by_name["SimulatorService"].full_name
LOG_WAIT_SECONDS = 30.0
"""How long a load waits for its LOADED event to come back through the log."""
RETRY_ATTACH_SECONDS = 30.0


class SimulatorApp:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.state = ExchangeState()
        self.follower = LogFollower(self.state, config.kafka_bootstrap, config.events_topic)
        self.channel = grpc.aio.insecure_channel(config.gateway_address)
        self.gateway = GatewayClient(self.channel, config.admin_key)
        self.stats = SimulatorStats()
        self.keys: dict[str, str] = {}
        self.runner: ScenarioRunner | None = None
        self.grpc: GrpcServer | None = None
        self._loading = asyncio.Lock()
        self._driver: asyncio.Task[None] | None = None
        self._attach_failed: dict[tuple[str, int, int], float] = {}

    @property
    def grpc_address(self) -> str:
        assert self.grpc is not None
        host = self.config.grpc_address.rsplit(":", 1)[0]
        return f"{host}:{self.grpc.port}"

    async def start(self) -> None:
        await self.follower.start()
        servicer = SimulatorServicer(self)
        self.grpc = await start_grpc_server(
            self.config.grpc_address,
            lambda server: simulator_pb2_grpc.add_SimulatorServiceServicer_to_server(
                servicer, server
            ),
            [SERVICE_NAME],
            serving=False,
        )
        self._driver = asyncio.create_task(self._drive(), name="data-driver")
        log.info(
            "data_svc serving grpc=%s gateway=%s", self.grpc_address, self.config.gateway_address
        )

    async def wait(self) -> None:
        """Returns (raising) only if the follower or the driver ends by itself: a bug."""
        assert self.follower.task is not None and self._driver is not None
        done, _ = await asyncio.wait(
            {self.follower.task, self._driver}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            task.result()
            raise RuntimeError(f"{task.get_name()} stopped on its own")

    async def stop(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
        if self.runner is not None:
            await self.runner.stop()
        if self.grpc is not None:
            await self.grpc.stop()
        await self.follower.stop()
        await self.channel.close()

    # ---- following the log -----------------------------------------------------------------

    async def _drive(self) -> None:
        await self.follower.caught_up.wait()
        if not self.state.scenario.name and self.config.scenario:
            await self._autoload()
        assert self.grpc is not None
        while True:
            try:
                # A load in progress has the lock: the next step follows what it made.
                async with self._loading:
                    now = time.time_ns()
                    runner = await self._follow(now)
                    if runner is not None:
                        await runner.tick(now)
                await self.grpc.set_serving(True)
            except (grpc.aio.AioRpcError, ScenarioError, OSError) as error:
                log.warning("simulator step failed, trying again: %s", _describe(error))
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.config.tick_seconds)

    async def _autoload(self) -> None:
        """Until the scenario runs: a load that failed after logging it LOADED (nobody has
        traded in it yet) is made again."""
        name, seed = self.config.scenario, self.config.seed
        while self.state.scenario.state in (0, LOADED):
            try:
                await self.load(name, seed, paused=False)
                return
            except (grpc.aio.AioRpcError, OSError, TimeoutError) as error:
                log.warning("loading scenario %s failed, trying again: %s", name, _describe(error))
                await asyncio.sleep(2.0)
            except (ScenarioError, ScenarioNotFound) as error:
                log.error("MOCKEX_SCENARIO=%s cannot be loaded: %s", name, error)
                return

    async def _follow(self, now: int) -> ScenarioRunner | None:
        """The runner of the scenario the log names (a new one when that changed)."""
        status = self.state.scenario
        key = (status.name, status.seed, status.loaded_sequence)
        if self.runner is not None and self.runner.key == key:
            return self.runner
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None
        if not status.name:
            return None
        if time.monotonic() - self._attach_failed.get(key, -RETRY_ATTACH_SECONDS) < (
            RETRY_ATTACH_SECONDS
        ):
            return None
        try:
            scenario = self.read_scenario(status.name)
        except (ScenarioError, ScenarioNotFound) as error:
            self._attach_failed[key] = time.monotonic()
            log.error("the log's scenario %s cannot be played: %s", status.name, error)
            return None
        if status.digest and scenario.digest != status.digest:
            log.warning(
                "scenario %s changed since it was loaded (digest %s, now %s): playing the file "
                "as it is now",
                status.name,
                status.digest[:12],
                scenario.digest[:12],
            )
        runner = self._new_runner(scenario, status.seed, status.loaded_sequence)
        await runner.open_bot_accounts()
        runner.start_clock(time.time_ns())
        self.runner = runner
        return runner

    def _new_runner(self, scenario: Scenario, seed: int, loaded_sequence: int) -> ScenarioRunner:
        return ScenarioRunner(
            scenario, seed, loaded_sequence, self.state, self.gateway, self.keys, self.stats
        )

    # ---- loading a scenario ----------------------------------------------------------------

    def read_scenario(self, name: str) -> Scenario:
        path = self.config.scenarios_dir / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(self.scenario_names()) or "none"
            raise ScenarioNotFound(
                f"there is no scenario {name!r} in {self.config.scenarios_dir}; there are: {known}"
            )
        return load_scenario(path)

    def scenario_names(self) -> list[str]:
        return sorted(path.stem for path in self.config.scenarios_dir.glob("*.yaml"))

    async def load(self, name: str, seed: int, paused: bool) -> admin_pb2.LoadScenarioResponse:
        """List the scenario's symbols, set its rules, log it LOADED, open its bots' accounts,
        then run it (unless `paused`)."""
        async with self._loading:
            scenario = self.read_scenario(name)
            call, admin = self.gateway.call_admin, self.gateway.admin
            await self._list_symbols(scenario, seed)
            rules = scenario.rules
            await call(
                admin.SetRules,
                admin_pb2.SetRulesRequest(
                    short_limit=rules.short_limit,
                    max_open_orders=rules.max_open_orders,
                    position_limit=rules.position_limit,
                    maker_fee_bps=rules.maker_fee_bps,
                    taker_fee_bps=rules.taker_fee_bps,
                    message_rate_per_second=rules.message_rate_per_second,
                    ranking=METRICS[rules.ranking],
                ),
            )
            schedule = scenario.schedule
            rounds = 0 if schedule.repeat else len(schedule.rounds)
            before = self.state.scenario.loaded_sequence
            await call(
                admin.SetScenario,
                admin_pb2.SetScenarioRequest(
                    state=competition_pb2.LOADED,
                    name=scenario.name,
                    seed=seed,
                    digest=scenario.digest,
                    rounds=rounds,
                    participant_cash=scenario.participants.cash,
                    participant_positions=dict(scenario.participants.positions),
                ),
            )
            await self._until(
                lambda: (
                    self.state.scenario.loaded_sequence > before
                    and self.state.scenario.state == LOADED
                )
            )
            if self.runner is not None:
                await self.runner.stop()
                self.runner = None
            status = self.state.scenario
            # Attached only once it is complete: after a failure on the way the driver attaches
            # a runner to what the log shows.
            runner = self._new_runner(scenario, status.seed, status.loaded_sequence)
            await runner.open_bot_accounts()
            if not paused:
                await call(
                    admin.SetScenario, admin_pb2.SetScenarioRequest(state=competition_pb2.RUNNING)
                )
            runner.start_clock(time.time_ns())
            self.runner = runner
            log.info(
                "loaded scenario %s seed %d (%s): %d symbols, %d bots%s",
                scenario.name,
                seed,
                scenario.digest[:12],
                len(scenario.instruments),
                len(self.runner.bots),
                ", paused" if paused else "",
            )
            return admin_pb2.LoadScenarioResponse(
                name=scenario.name,
                seed=seed,
                digest=scenario.digest,
                symbols=scenario.symbols,
                bots=len(self.runner.bots),
                rounds=rounds,
            )

    async def _list_symbols(self, scenario: Scenario, seed: int) -> None:
        """Each instrument listed as the scenario has it, at its fair value at time 0; one
        already listed must have the same tick and lot size."""
        call, admin = self.gateway.call_admin, self.gateway.admin
        listed = await call(self.gateway.book.ListSymbols, market_pb2.ListSymbolsRequest())
        existing = {info.symbol: info for info in listed.symbols}
        start = FairValues(scenario, seed)
        for instrument in scenario.instruments:
            tick = float(instrument.tick_size)
            info = existing.get(instrument.symbol)
            if info is not None:
                if abs(info.tick_size - tick) > 1e-12 or info.lot_size != instrument.lot_size:
                    raise ScenarioError(
                        f"{instrument.symbol} is listed with tick size {info.tick_size:g} and "
                        f"lot size {info.lot_size}; scenario {scenario.name} has tick size "
                        f"{instrument.tick_size} and lot size {instrument.lot_size}"
                    )
                continue
            reference = max(1, round(start.ticks(instrument.symbol)))
            request = admin_pb2.AddSymbolRequest(
                symbol=instrument.symbol,
                tick_size=tick,
                lot_size=instrument.lot_size,
                reference_price=ticks_to_price(reference, tick),
            )
            basket = instrument.basket
            if basket is not None:
                request.basket.update(dict(basket.shares))
                request.conversion_fee = basket.conversion_fee
            try:
                await call(admin.AddSymbol, request)
            except grpc.aio.AioRpcError as error:
                # Absent a moment ago: a retried call of ours that had been applied.
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise

    async def _until(self, condition) -> None:
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the exchange's log did not show the change in time")
            await asyncio.sleep(0.01)

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> admin_pb2.GetSimulatorStatusResponse:
        scenario = self.state.scenario
        answer = admin_pb2.GetSimulatorStatusResponse(
            scenario=scenario.name,
            seed=scenario.seed,
            state=_STATE_NAMES.get(scenario.state, "NOT_STARTED"),
            scenario_seconds=scenario.clock(time.time_ns()) / 1e9,
            rejected=dict(self.stats.rejected),
            skipped=dict(self.stats.skipped),
        )
        if self.runner is not None:
            answer.fair_values.update(self.runner.fair_values.snapshot())
        wall = time.monotonic()
        for kind, stats in sorted(self.stats.kinds.items()):
            answer.kinds.add(
                kind=kind,
                bots=stats.bots,
                orders=stats.orders,
                cancels=stats.cancels,
                orders_per_second=stats.orders_per_second(wall),
            )
        return answer


_STATE_NAMES = {LOADED: "LOADED", RUNNING: "RUNNING", PAUSED: "PAUSED", STOPPED: "FINISHED"}
"""The engine's scenario states by the public names (competition.proto EventState)."""


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name} {error.details()}"
    return str(error)
