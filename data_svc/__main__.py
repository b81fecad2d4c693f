"""`python -m data_svc`: the market simulator, until SIGTERM/SIGINT."""

from data_svc.app import SimulatorApp
from data_svc.config import SimulatorConfig
from mockex.runner import run_service

if __name__ == "__main__":
    run_service("data_svc", lambda: SimulatorApp(SimulatorConfig.from_env()))
