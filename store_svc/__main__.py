"""`python -m store_svc`: the log copied into the database and the history queries, until
SIGTERM/SIGINT."""

from mockex.runner import run_service
from store_svc.app import StoreApp
from store_svc.config import StoreConfig

if __name__ == "__main__":
    run_service("store_svc", lambda: StoreApp(StoreConfig.from_env()))
