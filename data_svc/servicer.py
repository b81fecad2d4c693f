"""SimulatorService: the gateway's admin scenario operations, which need the scenario files only
the simulator reads. A scenario file's mistake comes back as INVALID_ARGUMENT naming the field
and the line; a missing one as NOT_FOUND listing those there are."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from data_svc.scenario import ScenarioError
from exchange.internal.v1 import simulator_pb2, simulator_pb2_grpc

if TYPE_CHECKING:
    from data_svc.app import SimulatorApp


class ScenarioNotFound(LookupError):
    """No scenario file of that name."""


class SimulatorServicer(simulator_pb2_grpc.SimulatorServiceServicer):
    def __init__(self, app: SimulatorApp) -> None:
        self.app = app

    async def LoadScenario(self, request, context):
        try:
            loaded = await self.app.load(request.name, request.seed, request.paused)
        except ScenarioNotFound as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except ScenarioError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except TimeoutError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except grpc.aio.AioRpcError as error:
            await context.abort(
                error.code(), f"the exchange refused a step of the load: {error.details()}"
            )
        return simulator_pb2.LoadScenarioResponse(loaded=loaded)

    async def ListScenarios(self, request, context):
        answer = simulator_pb2.ListScenariosResponse()
        for name in self.app.scenario_names():
            try:
                scenario = self.app.read_scenario(name)
            except ScenarioError as error:
                answer.scenarios.add(name=name, description=f"cannot be loaded: {error}")
                continue
            schedule = scenario.schedule
            answer.scenarios.add(
                name=scenario.name,
                description=scenario.description,
                symbols=scenario.symbols,
                rounds=0 if schedule.repeat else len(schedule.rounds),
                duration_seconds=schedule.cycle_seconds,
            )
        return answer

    async def GetSimulatorStatus(self, request, context):
        return simulator_pb2.GetSimulatorStatusResponse(status=self.app.status())
