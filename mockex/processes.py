"""Starting and stopping the exchange's real servers (Redis, Kafka, our services) as processes.

Used by `make run` (mockex.run) and by the integration tests, which start their own servers on
free loopback ports and stop them by pid.

Every child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with whoever started it, even when that
was killed with SIGKILL. It is set by util-linux's `setpriv --pdeathsig KILL`, which then execs
the child: a preexec_fn would make subprocess fork a process full of threads (gRPC's) and run
Python in the child, which crashes it. Linux sends the signal when the *thread* that forked the
child exits, not the process: start children only from threads that live as long as the
children should (the main thread, or mockex.supervisor's watcher threads).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mockex import edge, names, settings
from mockex.private import PRIVATE_UMASK, open_private, private_dir, write_private

REPO_ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent (thread) dies."""

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children just outlive a killed parent
    _prctl = None


def set_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` to this process when its parent dies; False where unsupported.

    Kept across execve (for binaries that are not set-user-id), so bash scripts that exec their
    server (scripts/start-kafka.sh) pass it on."""
    return _prctl is not None and _prctl(PR_SET_PDEATHSIG, signum) == 0


SETPRIV = shutil.which("setpriv")
"""util-linux, on every Debian; without it (not Linux) children just outlive a killed parent."""


def dies_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that it gets SIGKILL when the thread that started it exits."""
    if SETPRIV is None:
        return list(argv)
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different free loopback ports: every socket stays bound until all are chosen,
    so the kernel cannot hand the same port out twice (two services given one port would
    have the second fail to bind while the first answers its health check)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ManagedProcess:
    """A child process in its own process group, with its output in a log file.

    It dies with the thread that started it (PR_SET_PDEATHSIG, see the module's docstring). With
    `pid_file` set, its pid and start time are written there while it runs, so that a later run
    can find it if it outlived its parent (mockex.supervisor). The log file is the user's alone,
    and the child starts with the umask PRIVATE_UMASK, so the files it creates are too
    (mockex.private)."""

    echo_to_console = False
    """When set (by `make run`), every output line is also printed as `[name] line`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict | None = None,
        pid_file: Path | None = None,
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.pid_file = pid_file
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        """time.monotonic() of the start."""

    def start(self) -> ManagedProcess:
        log = os.fdopen(open_private(self.log_path, os.O_WRONLY | os.O_APPEND), "ab")
        self.process = subprocess.Popen(
            dies_with_parent(self.argv),
            stdout=subprocess.PIPE if self.echo_to_console else log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
        self.started_at = time.monotonic()
        if self.pid_file is not None:
            write_pid_file(self.pid_file, self.process.pid)
        if self.echo_to_console:
            threading.Thread(target=self._echo, args=(log,), daemon=True).start()
        else:
            log.close()
        return self

    def _echo(self, log) -> None:
        prefix = f"[{self.name}] ".encode()
        with log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.flush()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code, or minus the signal that ended it; None while it runs."""
        return None if self.process is None else self.process.poll()

    def wait_for_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}:\n{self.tail()}")
            if port_open(port):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} did not open port {port} in {timeout}s; see {self.log_path}"
        )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, no goodbye: for crash tests."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        self._remove_pid_file()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL if it is still there after `timeout`."""
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        self._remove_pid_file()

    def _remove_pid_file(self) -> None:
        """Only while it names this process: a restarted successor may have rewritten it."""
        if self.pid_file is not None and self.process is not None:
            recorded = read_pid_file(self.pid_file)
            if recorded is not None and recorded[0] == self.process.pid:
                self.pid_file.unlink(missing_ok=True)


def wait_or_stop(process: ManagedProcess, wait: Callable[[], None]) -> ManagedProcess:
    """Run `wait` (until the process is ready); if it fails, stop the process, then re-raise, so
    that a start that failed leaves nothing running."""
    try:
        wait()
    except BaseException:
        process.stop()
        raise
    return process


# Pid files: `<pid> <start time>`, the start time in clock ticks since boot (/proc/<pid>/stat),
# so that a pid the kernel has given to another process since is not taken for ours.


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, first)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot); None if there is no such process or
    it is a zombie (dead, waiting for its parent to reap it)."""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return int(stat[19])


def process_group(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else int(stat[2])


def parent_pid(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else int(stat[1])


def process_command(pid: int) -> str:
    """Its command line, for messages ("" if unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def write_pid_file(path: Path, pid: int) -> None:
    write_private(path, f"{pid} {process_start_time(pid) or 0}\n".encode())


def read_pid_file(path: Path) -> tuple[int, int] | None:
    """(pid, start time), or None when missing or unreadable."""
    try:
        pid, start_time = path.read_text().split()
        return int(pid), int(start_time)
    except (OSError, ValueError):
        return None


def live_pid(path: Path) -> int | None:
    """The pid in the pid file if that very process still runs (same start time), else None."""
    recorded = read_pid_file(path)
    if recorded is None:
        return None
    pid, start_time = recorded
    return pid if process_start_time(pid) == start_time else None


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop a process that is not our child (we cannot wait for it): SIGTERM to its process
    group (our children lead their own), SIGKILL after `timeout`; returns once it is gone."""
    start_time = process_start_time(pid)
    if start_time is None:
        return
    leads_group = process_group(pid) == pid
    for signum, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            if leads_group:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process_start_time(pid) != start_time:
                return
            time.sleep(0.05)
    raise TimeoutError(f"pid {pid} survived SIGKILL")


def port_holder(port: int) -> int | None:
    """The pid of a process listening on TCP `port` on this machine, found through /proc
    (None when /proc does not tell, e.g. another user's process without root)."""
    holders = port_holders(port)
    return min(holders) if holders else None


def port_holders(port: int) -> set[int]:
    """Every process listening on TCP `port` (several with SO_REUSEPORT), as far as /proc
    tells."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    holders: set[int] = set()
    if not inodes:
        return holders
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(link in inodes for link in _fd_links(entry)):
            holders.add(int(entry.name))
    return holders


def _fd_links(process_dir: Path) -> Iterator[str]:
    """What each open file descriptor of a process points to. A descriptor closed while we
    look is skipped alone: stopping at it missed a listener of a busy process (the test's own)."""
    try:
        descriptors = list((process_dir / "fd").iterdir())
    except OSError:
        return
    for fd in descriptors:
        try:
            yield os.readlink(fd)
        except OSError:
            continue


REDIS_CONFIG_FILE = "redis.conf"
"""In Redis's data directory: the password, which a command line would show to every user."""


def redis_config(password: str) -> str:
    """The redis.conf that sets `password` (requirepass), quoted as Redis reads a config line."""
    if not password or any(ord(char) < 0x20 or ord(char) == 0x7F for char in password):
        raise ValueError("the Redis password must be non-empty, without control characters")
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'requirepass "{quoted}"\n'


def redis_process(port: int, data_dir: Path, password: str) -> ManagedProcess:
    """redis-server with AOF off (Kafka is the durable copy), bound to loopback, refusing
    clients without `password` (NOAUTH); not started."""
    private_dir(data_dir)
    config = data_dir / REDIS_CONFIG_FILE
    write_private(config, redis_config(password).encode())
    argv = [
        "redis-server",
        str(config),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--client-output-buffer-limit",
        "pubsub 256mb 128mb 60",
    ]
    return ManagedProcess("redis", argv, data_dir / "redis.log")


def start_redis(port: int, data_dir: Path, password: str) -> ManagedProcess:
    """redis_process, started; returns once it accepts connections."""
    process = redis_process(port, data_dir, password).start()
    return wait_or_stop(process, lambda: process.wait_for_port(port, 10))


def kafka_process(port: int, controller_port: int, data_dir: Path) -> ManagedProcess:
    """A real single-node KRaft broker from the Maven Central jars (scripts/start-kafka.sh);
    not started. The script execs java, so the child is the broker itself."""
    argv = [
        "bash",
        str(REPO_ROOT / "scripts" / "start-kafka.sh"),
        str(port),
        str(controller_port),
        str(data_dir),
    ]
    private_dir(data_dir)
    return ManagedProcess("kafka", argv, data_dir / "kafka.log")


def start_kafka(
    port: int, controller_port: int, data_dir: Path, timeout: float = 90
) -> ManagedProcess:
    """kafka_process, started; returns once the broker's port is open."""
    process = kafka_process(port, controller_port, data_dir).start()
    return wait_or_stop(process, lambda: process.wait_for_port(port, timeout))


def kafka_data_ports(data_dir: Path) -> tuple[int, int] | None:
    """(port, controller port) that the Kafka data in `data_dir` was formatted for, None if it
    holds none yet. scripts/start-kafka.sh refuses to start it on other ports."""
    try:
        lines = (data_dir / "server.properties").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("listeners="):
            ports: dict[str, int] = {}
            for listener in line.removeprefix("listeners=").split(","):
                name, address = listener.split("://")
                ports[name] = int(address.rsplit(":", 1)[1])
            return ports["PLAINTEXT"], ports["CONTROLLER"]
    return None


def topic_config(name: str) -> dict[str, str]:
    """Settings of a topic of ours. The events topic (with or without a test suffix) is the
    engine's log, the truth every restart replays: kept forever, not Kafka's 7 days, and with
    MOCKEX_LOG_FSYNC (on by default) written to disk before the broker acknowledges it, so an
    acknowledged order survives a machine crash, not only a broker crash (docs/architecture.md;
    the cost is measured by bench.log_durability)."""
    config = {"max.message.bytes": str(names.MAX_RECORD_BYTES)}
    if name == names.EVENTS_TOPIC or name.startswith(names.EVENTS_TOPIC + "."):
        config["retention.ms"] = "-1"
        if settings.log_fsync():
            config["flush.messages"] = "1"
    return config


async def create_topics(bootstrap: str, topics: Sequence[str], timeout: float = 60) -> None:
    """Create the topics (one partition each, replication 1, records up to MAX_RECORD_BYTES, the
    events topic kept forever and fsynced: topic_config) if missing, and give those that exist
    the same settings (a log made by an older version too); wait until usable."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in topics if name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=1,
                            replication_factor=1,
                            topic_configs=topic_config(name),
                        )
                        for name in missing
                    ]
                )
            present = [name for name in topics if name in existing]
            if present:
                await admin.alter_configs(
                    [
                        ConfigResource(ConfigResourceType.TOPIC, name, configs=topic_config(name))
                        for name in present
                    ]
                )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def service_process(name: str, module: str, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """One of our services, `python -m module`, with its settings in `env`; not started."""
    argv = [sys.executable, "-u", "-m", module]
    return ManagedProcess(name, argv, log_dir / f"{name}.log", env=env)


def python_service(name: str, module: str, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """service_process, started (not waited for)."""
    return service_process(name, module, env, log_dir).start()


def envoy_process(config: edge.EdgeConfig, data_dir: Path) -> ManagedProcess:
    """The participant edge: Envoy with envoy/envoy.yaml rendered into data_dir/edge; not
    started."""
    config_path = edge.write(config, data_dir / "edge")
    argv = [
        str(edge.envoy_binary()),
        "--config-path",
        str(config_path),
        # Several Envoys on one machine (make run, test modules): no shared-memory hot restart.
        "--disable-hot-restart",
        "--concurrency",
        str(config.workers),
        "--log-level",
        "warn",
    ]
    return ManagedProcess("edge", argv, data_dir / "logs" / "edge.log")


def start_envoy(config: edge.EdgeConfig, data_dir: Path, timeout: float = 30) -> ManagedProcess:
    """envoy_process, started; returns once ready (wait_envoy_ready)."""
    process = envoy_process(config, data_dir).start()
    return wait_or_stop(process, lambda: wait_envoy_ready(process, config, timeout))


def wait_envoy_ready(process: ManagedProcess, config: edge.EdgeConfig, timeout: float) -> None:
    """Until Envoy's admin interface says the server is LIVE, i.e. the listener is bound."""
    deadline = time.monotonic() + timeout
    ready_url = f"http://127.0.0.1:{config.admin_port}/ready"
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"edge exited; see {process.log_path}:\n{process.tail()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as answer:
                if answer.status == 200 and port_open(config.port):
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"edge not ready on {config.port} after {timeout}s:\n{process.tail()}")
