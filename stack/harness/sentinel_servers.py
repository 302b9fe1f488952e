"""A Redis that fails over: a master, a replica and three sentinels on loopback.

The `ha` profile and the Sentinel tests both run one. Failover is tuned fast
(a master silent for DOWN_AFTER_MS is down; a failover retried after
FAILOVER_TIMEOUT_MS) so a test sees the replica promoted in seconds. It
implements the :class:`~stack.harness.redis_servers.RedisServer` protocol, so
the ``stack_*`` fixtures run over it unchanged: its ``url`` is the sentinel list.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.sentinel

from stack.errors import RedisServerError
from stack.harness.redis_servers import STOP_TIMEOUT_S, wait_until_ready
from stack.redis_command import config_quoted, find_redis_binary, free_port, redis_args

MASTER_NAME = "stack-master"
QUORUM = 2  # two of the three sentinels must agree that the master is down
DOWN_AFTER_MS = 1000  # Sentinel's default is 30 s: far too slow for a test
FAILOVER_TIMEOUT_MS = 3000  # Sentinel's default is 3 min
MIN_REPLICAS_MAX_LAG_S = 10  # with min-replicas-to-write: a replica this far behind counts as gone
READY_TIMEOUT_S = 20.0  # sentinels find each other through hello messages every 2 s
POLL_S = 0.05
EMPTY = '""'  # an empty redis.conf argument (save "")


@dataclass
class RedisProcess:
    """One redis-server (or redis-server --sentinel) child with its config file."""

    name: str
    port: int
    config: Path
    log: Path
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, binary: str) -> list[str]:
        return [binary, str(self.config), *(["--sentinel"] if self.sentinel else [])]

    def start(self, binary: str) -> None:
        if self.running:
            return
        self.process = subprocess.Popen(self.command(binary), stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        """SIGTERM (AOF flushed), SIGKILL if it does not exit in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the crash Sentinel exists for."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class SentinelCluster:
    """Master + replica + three sentinels in ``data_dir`` (ports free ones unless given).

    ``min_replicas_to_write`` is set on the first master only: a promoted replica
    has no replica of its own until the old master comes back, and must still
    take writes.
    """

    data_dir: Path
    password: str | None = None
    sentinel_password: str | None = None
    master_name: str = MASTER_NAME
    min_replicas_to_write: int = 1
    ports: tuple[int, ...] = ()
    binary: str = field(default_factory=find_redis_binary)
    servers: list[RedisProcess] = field(default_factory=list, init=False)
    sentinels: list[RedisProcess] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        ports = list(self.ports) or [free_port() for _ in range(5)]
        if len(ports) != 5:
            raise RedisServerError("a sentinel cluster needs 5 ports: master, replica, 3 sentinels")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        names = ["master", "replica", "sentinel-1", "sentinel-2", "sentinel-3"]
        for index, (name, port) in enumerate(zip(names, ports, strict=True)):
            home = self.data_dir / name  # each its own dir: AOF, config rewrites
            home.mkdir(mode=0o700, exist_ok=True)
            node = RedisProcess(name, port, home / "redis.conf", home / "redis.log", index > 1)
            (self.sentinels if node.sentinel else self.servers).append(node)

    # -------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        """The sentinel list every service is given (REDIS_URL), master's password inside."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}127.0.0.1:{s.port}/0" for s in self.sentinels)

    @property
    def description(self) -> str:
        ports = ", ".join(f"{node.name} {node.port}" for node in self.servers + self.sentinels)
        return f"Redis Sentinel cluster {self.master_name!r} on 127.0.0.1 ({ports})"

    def settings_environ(self) -> dict[str, str]:
        """The settings that point the stack at this cluster besides REDIS_URL."""
        environ = {"STACK_SENTINEL_MASTER": self.master_name}
        if self.sentinel_password:
            environ["STACK_SENTINEL_PASSWORD"] = self.sentinel_password
        return environ

    def node_url(self, node: RedisProcess) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{node.port}/0"

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is now."""
        sentinels = redis.sentinel.Sentinel(
            [("127.0.0.1", s.port) for s in self.sentinels if s.running],
            sentinel_kwargs={"password": self.sentinel_password, "socket_timeout": 1.0},
        )
        host, port = sentinels.discover_master(self.master_name)
        return str(host), int(port)

    def master(self) -> RedisProcess:
        port = self.master_address()[1]
        return next(node for node in self.servers if node.port == port)

    # -------------------------------------------------------------- configs

    def _write(self, node: RedisProcess, lines: list[str]) -> None:
        node.config.touch(mode=0o600)
        node.config.write_text("\n".join(lines) + "\n")

    def _server_config(self, node: RedisProcess, master_port: int | None) -> list[str]:
        args = redis_args(node.port, None, "everysec")
        lines = [f"{args[i][2:]} {args[i + 1] or EMPTY}" for i in range(0, len(args), 2)]
        lines += [
            "bind 127.0.0.1",
            f'dir "{node.config.parent}"',
            f'logfile "{node.log}"',
        ]
        if self.password:
            quoted = config_quoted(self.password)
            lines += [f'requirepass "{quoted}"', f'masterauth "{quoted}"']
        if master_port is None:
            lines += [
                f"min-replicas-to-write {self.min_replicas_to_write}",
                f"min-replicas-max-lag {MIN_REPLICAS_MAX_LAG_S}",
            ]
        else:
            lines.append(f"replicaof 127.0.0.1 {master_port}")
        return lines

    def _sentinel_config(self, node: RedisProcess, master_port: int) -> list[str]:
        name = self.master_name
        lines = [
            f"port {node.port}",
            "bind 127.0.0.1",
            f'dir "{node.config.parent}"',
            f'logfile "{node.log}"',
            f"sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}",
            f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f'sentinel auth-pass {name} "{config_quoted(self.password)}"')
        if self.sentinel_password:
            quoted = config_quoted(self.sentinel_password)
            lines += [f'requirepass "{quoted}"', f'sentinel sentinel-pass "{quoted}"']
        return lines

    def write_configs(self) -> None:
        """The five config files, once: later the sentinels rewrite theirs (and the
        servers' roles) as failovers happen, and a restart must keep what they learnt."""
        if any(node.config.exists() for node in self.servers):
            return
        master, replica = self.servers
        self._write(master, self._server_config(master, None))
        self._write(replica, self._server_config(replica, master.port))
        for sentinel in self.sentinels:
            self._write(sentinel, self._sentinel_config(sentinel, master.port))

    def commands(self) -> dict[str, list[str]]:
        """Each node's name and the command that runs it (configs written first)."""
        self.write_configs()
        return {node.name: node.command(self.binary) for node in self.servers + self.sentinels}

    # -------------------------------------------------------------- life

    def start(self) -> None:
        """Start whatever is not running; on first start, wait until failover could work."""
        if all(node.running for node in self.servers + self.sentinels):
            return
        self.write_configs()
        for node in self.servers + self.sentinels:
            node.start(self.binary)
        for node in self.servers:
            wait_until_ready(self.node_url(node), alive=lambda n=node: n.running)
        self.wait_until_failover_ready()

    def wait_until_failover_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Each sentinel sees the master, one replica and the two other sentinels."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if all(self._sentinel_ready(s) for s in self.sentinels):
                    return
                last = "the sentinels do not see each other and the replica yet"
            except redis.RedisError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(POLL_S * 4)
        logs = ", ".join(str(node.log) for node in self.servers + self.sentinels)
        raise RedisServerError(
            f"the sentinel cluster was not ready within {timeout_s:g} s ({last}); logs: {logs}"
        )

    def _sentinel_ready(self, node: RedisProcess) -> bool:
        client = redis.Redis(
            port=node.port,
            password=self.sentinel_password,
            socket_timeout=1.0,
            decode_responses=True,
        )
        try:
            state = client.sentinel_master(self.master_name)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        flags = str(state.get("flags", ""))
        return (
            "down" not in flags
            and int(state.get("num-slaves", 0)) >= 1
            and int(state.get("num-other-sentinels", 0)) >= len(self.sentinels) - 1
        )

    def kill_master(self) -> RedisProcess:
        """SIGKILL whichever server is master now; return it."""
        node = self.master()
        node.kill()
        return node

    def wait_for_new_master(self, old: RedisProcess, timeout_s: float = 30.0) -> float:
        """Seconds until the sentinels name another master and it takes writes."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            try:
                if self.master_address()[1] != old.port and self._takes_writes(self.master()):
                    return time.monotonic() - started
            except (redis.RedisError, StopIteration):
                pass
            time.sleep(POLL_S)
        raise RedisServerError(f"no replica was promoted within {timeout_s:g} s")

    def _takes_writes(self, node: RedisProcess) -> bool:
        client = redis.Redis.from_url(self.node_url(node), socket_timeout=1.0)
        try:
            return client.info("replication").get("role") == "master"
        finally:
            client.close()

    def stop(self) -> None:
        for node in self.sentinels + self.servers:
            node.stop()

    def kill(self) -> None:
        for node in self.sentinels + self.servers:
            node.kill()

    def restart(self) -> None:
        self.stop()
        self.start()
