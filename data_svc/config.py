"""data_svc settings, read from the environment once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_svc.scenario import SCENARIOS_DIR
from mockex import names, settings

TICK_SECONDS_DEFAULT = 0.05


@dataclass(frozen=True)
class SimulatorConfig:
    kafka_bootstrap: str = settings.KAFKA_BOOTSTRAP_DEFAULT
    events_topic: str = names.EVENTS_TOPIC
    gateway_address: str = "127.0.0.1:50051"
    """The public gRPC API the bots trade on."""
    admin_key: str = ""
    grpc_address: str = "127.0.0.1:50056"
    """SimulatorService, for the gateway's admin LoadScenario and ListScenarios."""
    scenarios_dir: Path = SCENARIOS_DIR
    scenario: str = ""
    """Loaded and run at start when the log has no scenario yet ("" for none): `make run` sets
    MOCKEX_SCENARIO=default. Once the log names a scenario, the log decides."""
    seed: int = 1
    tick_seconds: float = TICK_SECONDS_DEFAULT
    """How often the simulator looks at its clock: the bots' timing resolution."""

    @classmethod
    def from_env(cls) -> SimulatorConfig:
        admin_key = settings.env_str("MOCKEX_ADMIN_KEY", "")
        if not admin_key:
            raise ValueError(
                "MOCKEX_ADMIN_KEY is empty: the simulator lists symbols and opens its bots' "
                "accounts with the admin key"
            )
        seed = settings.env_int("MOCKEX_SCENARIO_SEED", 1)
        if seed < 0:
            raise ValueError(f"MOCKEX_SCENARIO_SEED={seed} must be 0 or more")
        tick = settings.env_float("MOCKEX_SIMULATOR_TICK_SECONDS", TICK_SECONDS_DEFAULT)
        if not 0 < tick <= 1:
            raise ValueError(f"MOCKEX_SIMULATOR_TICK_SECONDS={tick:g} must be in (0, 1]")
        return cls(
            kafka_bootstrap=settings.kafka_bootstrap(),
            events_topic=settings.env_str("MOCKEX_EVENTS_TOPIC", names.EVENTS_TOPIC),
            gateway_address=settings.env_str(
                "MOCKEX_GATEWAY_ADDRESS", settings.local_address("gateway")
            ),
            admin_key=admin_key,
            grpc_address=settings.env_str(
                "MOCKEX_DATA_GRPC_ADDRESS", settings.local_address("data")
            ),
            scenarios_dir=Path(settings.env_str("MOCKEX_SCENARIOS_DIR", str(SCENARIOS_DIR))),
            scenario=settings.env_str("MOCKEX_SCENARIO", ""),
            seed=seed,
            tick_seconds=tick,
        )
