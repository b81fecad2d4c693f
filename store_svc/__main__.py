"""python -m store_svc: the store service, configured from the environment (store_svc.config)."""

from __future__ import annotations

import asyncio
import logging

from store_svc.app import run
from store_svc.config import StoreConfig


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(run(StoreConfig.from_env()))


if __name__ == "__main__":
    main()
