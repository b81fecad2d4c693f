"""`python -m gateway_svc`: the gRPC front door, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from gateway_svc.app import GatewayApp
from gateway_svc.config import GatewayConfig


async def main() -> None:
    config = GatewayConfig.from_env()
    app = GatewayApp(config)
    await app.start()
    host = config.grpc_address.rsplit(":", 1)[0]
    logging.getLogger("gateway_svc").info(
        "gateway_svc serving grpc=%s:%d id=%s", host, app.grpc.port, config.gateway_id
    )
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    await stop_requested.wait()
    await app.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main())
