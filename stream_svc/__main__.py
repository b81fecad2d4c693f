"""`python -m stream_svc`: market data, order updates and exchange events, until SIGTERM/SIGINT."""

from mockex.runner import run_service
from stream_svc.app import StreamApp
from stream_svc.config import StreamConfig

if __name__ == "__main__":
    run_service("stream_svc", lambda: StreamApp(StreamConfig.from_env()))
