"""`python -m engine_svc`: the matching engine service, until SIGTERM/SIGINT."""

from engine_svc.app import EngineApp
from engine_svc.config import EngineConfig
from mockex.runner import run_service

if __name__ == "__main__":
    run_service("engine_svc", lambda: EngineApp(EngineConfig.from_env()))
