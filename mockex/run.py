"""`make run`: the whole exchange on this machine, with logs prefixed per process.

A child that exits is started again (mockex.supervisor). Ctrl-C, SIGTERM and SIGHUP stop every
child and exit; if this process is killed outright, the children die with it (PR_SET_PDEATHSIG,
mockex.processes), and it stops them itself when its parent (`make`) is killed. Children an
earlier run of the same data directory left behind (pid files in <data>/run) are stopped first.

Data lives under var/, or MOCKEX_DATA_DIR (Kafka log, SQLite database, admin key, Redis
password, logs), so a restart continues where it stopped; only its user may read it
(mockex.private). Ports: MOCKEX_HTTP_PORT, MOCKEX_GRPC_PORT, ... (settings.PORTS).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO

import grpc

from exchange.v1 import competition_pb2, competition_pb2_grpc, market_pb2, market_pb2_grpc
from mockex import processes
from mockex.auth import new_api_key
from mockex.private import PRIVATE_UMASK, kept_secret, new_password, open_private
from mockex.settings import PORTS, shown_url
from mockex.stack import SERVICES, ExchangeStack, StackPorts, group_sizes_from_env
from mockex.supervisor import Supervisor, say

DEFAULT_SCENARIO = "default"
"""What the simulator plays on a first run (MOCKEX_SCENARIO chooses another, "" none)."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOCK_FILE = "supervisor.lock"
"""In <data>/run: locked while a supervisor runs on that data directory; holds its pid."""
MOCKEX_MARKERS = ("mockex", "_svc", "start-kafka.sh", "kafka.Kafka", "/edge/envoy.yaml")
"""Text in the command line of a Mockex process (or of its parent, for redis-server)."""


class Stop(Exception):
    """A signal asked us to stop."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def data_directory() -> Path:
    """MOCKEX_DATA_DIR, else var/ in the repository; absolute, since children run elsewhere."""
    raw = os.environ.get("MOCKEX_DATA_DIR")
    return Path(raw).resolve() if raw else processes.REPO_ROOT / "var"


def admin_key(data_dir: Path) -> str:
    """MOCKEX_ADMIN_KEY, else the key generated on the first run (kept in <data>/admin-key)."""
    return kept_secret(data_dir / "admin-key", "MOCKEX_ADMIN_KEY", new_api_key)


def redis_password(data_dir: Path) -> str:
    """MOCKEX_REDIS_PASSWORD, else the password generated on the first run (kept in
    <data>/redis-password, for redis-cli and the next run)."""
    return kept_secret(data_dir / "redis-password", "MOCKEX_REDIS_PASSWORD", new_password)


def lock_data_dir(data_dir: Path, run_dir: Path) -> IO[str]:
    """One supervisor per data directory: two would take each other's children for leftovers.
    The lock goes with the process, however it ends."""
    handle = os.fdopen(open_private(run_dir / LOCK_FILE, os.O_RDWR | os.O_APPEND), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "?"
        sys.exit(
            f"error: Mockex is already running on {data_dir} (pid {other}); stop it, or set "
            "MOCKEX_DATA_DIR and the port variables (README, Configuration) for a second one"
        )
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def stop_leftovers(run_dir: Path, data_dir: Path) -> None:
    """Children of an earlier run of this data directory that outlived it (a pid file naming a
    process that still runs and started when the file says): stopped, one line each."""
    for pid_file in sorted(run_dir.glob("*.pid")):
        pid = processes.live_pid(pid_file)
        if pid is not None:
            say(
                f"==> stopping {pid_file.stem} (pid {pid}), left running by an earlier run "
                f"of {data_dir}"
            )
            processes.stop_pid(pid)
        pid_file.unlink(missing_ok=True)


def _looks_like_mockex(pid: int) -> bool:
    parent = processes.parent_pid(pid)
    commands = [processes.process_command(pid)]
    if parent:
        commands.append(processes.process_command(parent))
    return any(marker in command for command in commands for marker in MOCKEX_MARKERS)


def _short(command: str, limit: int = 80) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def check_ports_free(ports: StackPorts) -> None:
    """Exit naming each busy port, the variable that moves it and, if /proc tells, its holder."""
    problems = []
    for name, port in vars(ports).items():
        if not processes.port_open(port):
            continue
        variable = PORTS[name].variable
        holder = processes.port_holder(port)
        if holder is None:
            problems.append(
                f"error: port {port} ({variable}) is in use: is Mockex already running? "
                f"stop it or set {variable}"
            )
            continue
        command = _short(processes.process_command(holder)) or "?"
        hint = "is Mockex already running? " if _looks_like_mockex(holder) else ""
        problems.append(
            f"error: port {port} ({variable}) is in use by pid {holder} ({command}); "
            f"{hint}stop it or set {variable}"
        )
    if problems:
        sys.exit("\n".join(problems))


def check_kafka_data(kafka_dir: Path, ports: StackPorts) -> None:
    """The broker's storage is formatted for its ports (scripts/start-kafka.sh refuses others):
    say so before starting anything."""
    formatted = processes.kafka_data_ports(kafka_dir)
    if formatted is None or formatted == (ports.kafka, ports.kafka_controller):
        return
    port, controller_port = formatted
    sys.exit(
        f"error: the Kafka data in {kafka_dir} was formatted for ports {port} and "
        f"{controller_port}, not {ports.kafka} and {ports.kafka_controller}: set "
        f"{PORTS['kafka'].variable}={port} {PORTS['kafka_controller'].variable}="
        f"{controller_port}, or delete {kafka_dir}/server.properties and {kafka_dir}/logs "
        "(the exchange's log: every order and trade)"
    )


def wait_for_scenario(gateway_port: int, key: str, scenario: str, timeout: float = 30.0) -> str:
    """Until the simulator runs the scenario (a first run loads `scenario`, MOCKEX_SCENARIO, a
    moment after data_svc is up) and its first round is open; a line saying where the event
    stands."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{gateway_port}") as channel:
        schedule_of = competition_pb2_grpc.CompetitionServiceStub(channel).GetSchedule
        symbols_of = market_pb2_grpc.BookServiceStub(channel).ListSymbols
        metadata = (("x-api-key", key),)
        while True:
            schedule = schedule_of(
                competition_pb2.GetScheduleRequest(), metadata=metadata, timeout=10
            )
            starting = (
                (schedule.state == competition_pb2.NOT_STARTED and scenario)
                or schedule.state == competition_pb2.LOADED
                or (schedule.state == competition_pb2.RUNNING and not schedule.round)
            )
            if not starting or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if schedule.state == competition_pb2.NOT_STARTED:
            return "no scenario (POST /admin/scenario/load starts one; docs/organizer.md)"
        symbols = symbols_of(market_pb2.ListSymbolsRequest(), metadata=metadata, timeout=10)
        state = competition_pb2.EventState.Name(schedule.state)
        listed = ", ".join(info.symbol for info in symbols.symbols)
        return f"{schedule.scenario} {state}, round {schedule.round}; symbols {listed}"


def start_all(stack: ExchangeStack) -> None:
    """Everything, in dependency order, each waited for; then the banner."""
    started = time.monotonic()
    ports = stack.ports
    print("==> starting Redis and Kafka", flush=True)
    stack.start_infrastructure()
    for name in SERVICES:
        for child in stack.members(name):
            which = f" ({child})" if child != name else ""
            print(f"==> starting {name}_svc{which}", flush=True)
            stack.start_service(child)
    print("==> starting the edge (Envoy)", flush=True)
    stack.start_edge()
    key = stack.admin_key
    scenario = wait_for_scenario(ports.gateway, key, stack.scenario)
    print(
        f"""
Mockex is up ({time.monotonic() - started:.1f}s).
  REST/gRPC-Web: http://localhost:{ports.edge}
  web terminal:  http://localhost:{ports.edge}/
  gRPC (all services, reflection on): 127.0.0.1:{ports.gateway}{processes_note(stack)}
  admin key (x-api-key):               {key}
  simulator: {scenario}
  Redis {shown_url(stack.redis_url)}   Kafka {stack.kafka_bootstrap}   data {stack.data_dir}
  try: curl -H 'X-API-Key: {key}' http://localhost:{ports.edge}/market/symbols
       grpcurl -plaintext -H 'x-api-key: {key}' 127.0.0.1:{ports.gateway} list
Ctrl-C stops everything.
""",
        flush=True,
    )


def processes_note(stack: ExchangeStack) -> str:
    """What the banner says of services that run as several processes sharing their ports."""
    groups = [
        f"{stack.group_size(name)} {name}_svc" for name in SERVICES if stack.group_size(name) > 1
    ]
    return f"  ({', '.join(groups)} processes sharing their ports)" if groups else ""


def main() -> None:
    # A killed `make` (our parent) stops us, and we stop the children.
    processes.set_death_signal(signal.SIGTERM)
    processes.ManagedProcess.echo_to_console = True
    # Whatever this process creates in the data directory is the user's alone, too.
    os.umask(PRIVATE_UMASK)
    data_dir = data_directory()
    try:
        ports = StackPorts.from_env()
        group_sizes = group_sizes_from_env()
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    stack = ExchangeStack(
        data_dir=data_dir,
        admin_key="",
        ports=ports,
        scenario=os.environ.get("MOCKEX_SCENARIO", DEFAULT_SCENARIO),
        group_sizes=group_sizes,
    )
    lock = lock_data_dir(data_dir, stack.run_dir)
    supervisor = Supervisor(stack)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stop)
    failed = False
    try:
        stop_leftovers(stack.run_dir, data_dir)
        check_kafka_data(data_dir / "kafka", ports)
        check_ports_free(ports)
        stack.admin_key = admin_key(data_dir)
        stack.redis_password = redis_password(data_dir)
        start_all(stack)
        supervisor.start()
        while True:
            time.sleep(3600)
    except Stop as stop:
        say(f"==> {stop} received")
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        failed = True
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if stack.processes:
            say("==> stopping")
        supervisor.stop()
        lock.close()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
