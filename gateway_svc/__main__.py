"""`python -m gateway_svc`: the gRPC front door, until SIGTERM/SIGINT."""

from gateway_svc.app import GatewayApp
from gateway_svc.config import GatewayConfig
from mockex.runner import run_service

if __name__ == "__main__":
    run_service("gateway_svc", lambda: GatewayApp(GatewayConfig.from_env()))
