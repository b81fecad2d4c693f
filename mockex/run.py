"""`make run`: the whole exchange on this machine, with logs prefixed per process; Ctrl-C stops.

Data lives under var/ (Kafka log, SQLite database), so a restart continues where it stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import grpc

from exchange.v1 import admin_pb2, admin_pb2_grpc, market_pb2, market_pb2_grpc
from mockex import processes
from mockex.auth import new_api_key
from mockex.stack import ExchangeStack, StackPorts

VAR_DIR = processes.REPO_ROOT / "var"
DEFAULT_SYMBOLS = (("ACME", 0.01, 1), ("GLOBX", 0.01, 1), ("INITECH", 0.05, 10))


def admin_key() -> str:
    """MOCKEX_ADMIN_KEY, else the key generated on the first run (kept in var/admin-key)."""
    if os.environ.get("MOCKEX_ADMIN_KEY"):
        return os.environ["MOCKEX_ADMIN_KEY"]
    path = VAR_DIR / "admin-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_api_key() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def check_ports_free(ports: StackPorts) -> None:
    busy = [f"{name}={port}" for name, port in vars(ports).items() if processes.port_open(port)]
    if busy:
        sys.exit(f"error: ports already in use ({', '.join(busy)}): is Mockex already running?")


def list_default_symbols(gateway_port: int, key: str) -> None:
    """A first run lists a few symbols so the exchange is usable at once."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway_port}") as channel:
        listed = market_pb2_grpc.BookServiceStub(channel).ListSymbols(
            market_pb2.ListSymbolsRequest(), timeout=10
        )
        if listed.symbols:
            return
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        for symbol, tick_size, lot_size in DEFAULT_SYMBOLS:
            admin.AddSymbol(
                admin_pb2.AddSymbolRequest(symbol=symbol, tick_size=tick_size, lot_size=lot_size),
                metadata=(("x-api-key", key),),
                timeout=10,
            )
            print(f"==> listed {symbol} (tick {tick_size}, lot {lot_size})", flush=True)


def main() -> None:
    processes.ManagedProcess.echo_to_console = True
    ports = StackPorts()
    check_ports_free(ports)
    key = admin_key()
    stack = ExchangeStack(data_dir=VAR_DIR, admin_key=key, ports=ports)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        started = time.monotonic()
        print("==> starting Redis and Kafka", flush=True)
        stack.start_infrastructure()
        for name in ("engine", "store", "stream", "gateway"):
            print(f"==> starting {name}_svc", flush=True)
            stack.start_service(name)
        print("==> starting the edge (Envoy)", flush=True)
        stack.start_edge()
        list_default_symbols(ports.gateway, key)
        print(
            f"""
Mockex is up ({time.monotonic() - started:.1f}s).
  REST/gRPC-Web: http://localhost:{ports.edge}
  web terminal:  http://localhost:{ports.edge}/
  gRPC (all services, reflection on): 127.0.0.1:{ports.gateway}
  admin key (x-api-key):               {key}
  Redis {stack.redis_url}   Kafka {stack.kafka_bootstrap}   data {VAR_DIR}
  try: curl -H 'X-API-Key: {key}' http://localhost:{ports.edge}/market/symbols
       grpcurl -plaintext -H 'x-api-key: {key}' 127.0.0.1:{ports.gateway} list
Ctrl-C stops everything.
""",
            flush=True,
        )
        while not stopping.is_set():
            for name, process in stack.processes.items():
                if not process.alive():
                    print(f"==> {name} exited; stopping everything (log: {process.log_path})")
                    stopping.set()
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("==> stopping", flush=True)
        stack.stop()


if __name__ == "__main__":
    main()
