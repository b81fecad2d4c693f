"""`python -m stream_svc`: serve until SIGTERM or SIGINT, then stop gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal

from mockex.telemetry import setup_tracing
from stream_svc.app import StreamApp
from stream_svc.config import StreamConfig


async def serve(config: StreamConfig) -> None:
    app = StreamApp(config)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = config.grpc_address.rsplit(":", 1)[0]
    ws_host = config.ws_address.rsplit(":", 1)[0]
    print(f"stream_svc serving grpc={host}:{app.port} ws={ws_host}:{app.ws_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await app.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_tracing("stream_svc")
    asyncio.run(serve(StreamConfig.from_env()))


if __name__ == "__main__":
    main()
