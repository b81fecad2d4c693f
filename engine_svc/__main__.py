"""`python -m engine_svc`: run the matching engine service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from engine_svc.app import EngineApp
from engine_svc.config import EngineConfig


async def main() -> None:
    config = EngineConfig.from_env()
    app = EngineApp(config)
    await app.start()
    logging.getLogger("engine_svc").info(
        "engine_svc serving grpc=%s kafka=%s redis=%s",
        f"{config.grpc_address.rsplit(':', 1)[0]}:{app.grpc.port}",
        config.kafka_bootstrap,
        config.redis_url,
    )
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    waiter = asyncio.create_task(app.wait())
    stopper = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        waiter.result()  # the loop failed: let the exception end the process
    await app.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main())
