"""The `ha` profile: the dev stack on a Redis that fails over.

In place of the one `redis` line it runs a master, a replica and three
sentinels (:class:`~stack.harness.sentinel_servers.SentinelCluster`, configs in
the data dir), each gated on the one before, and points every other service at
the sentinels: REDIS_URL becomes the ``sentinel://`` list and
STACK_SENTINEL_MASTER names the master, so the API, workers, beat and Flower
follow a failover. Ports: the master on REDIS_URL's port, the replica on the
next one, the sentinels on SENTINEL_PORT_OFFSET above the master's and the two
after it (6379 -> 6380, 26379-26381).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping

from stack.checks.probes import RedisPing
from stack.connection import redact
from stack.errors import SettingsError
from stack.harness.sentinel_servers import MASTER_NAME, SentinelCluster
from stack.launcher.dev import dev_services
from stack.launcher.services import REDIS, Port, Service
from stack.redis_command import UMASK, local_redis_port, private_data_dir, redis_password
from stack.redis_url import is_sentinel
from stack.settings import Settings

HA_DIR = "ha"
SENTINEL_PORT_OFFSET = 20000  # 6379 -> 26379, Sentinel's own default port


def ha_cluster(settings: Settings) -> SentinelCluster:
    """The cluster this profile runs, its configs in ``<data dir>/ha``."""
    if is_sentinel(settings.broker_url):
        raise SettingsError(
            "the ha profile runs its own sentinels: set REDIS_URL to the master's address, "
            "e.g. redis://127.0.0.1:6379/0 (it uses that port, the next, and 26379-26381), "
            "or use the dev profile with your own sentinel:// list"
        )
    port = local_redis_port(settings)
    sentinel = port + SENTINEL_PORT_OFFSET
    return SentinelCluster(
        private_data_dir(settings) / HA_DIR,
        password=redis_password(settings),
        sentinel_password=(
            settings.sentinel_password.get_secret_value() if settings.sentinel_password else None
        ),
        master_name=settings.sentinel_master or MASTER_NAME,
        ports=(port, port + 1, sentinel, sentinel + 1, sentinel + 2),
    )


def ha_settings(settings: Settings, cluster: SentinelCluster) -> Settings:
    """``settings`` pointed at the cluster's sentinels (what every other service is given)."""
    return settings.model_copy(
        update={
            "redis_url": cluster.url,
            "celery_broker_url": None,
            "celery_result_backend": None,
            "sentinel_master": cluster.master_name,
        }
    )


def cluster_services(settings: Settings, cluster: SentinelCluster) -> list[Service]:
    """Master, then replica, then the sentinels: each probed by PING, gated on the last."""
    services: list[Service] = []
    commands = cluster.commands()
    previous: tuple[str, ...] = ()
    for node in cluster.servers + cluster.sentinels:
        password = cluster.sentinel_password if node.sentinel else cluster.password
        url = f"redis://127.0.0.1:{node.port}/0"
        node_settings = settings.model_copy(
            update={"redis_url": url, "celery_broker_url": None, "redis_password": None}
        )
        if password:
            node_settings = node_settings.model_copy(
                update={"redis_url": f"redis://:{password}@127.0.0.1:{node.port}/0"}
            )
        command = f"umask {UMASK} && exec {shlex.join(commands[node.name])}"
        name = node.name if node.sentinel else f"redis-{node.name}"
        services.append(
            Service(
                name,
                command,
                RedisPing(node_settings),
                redact(url),
                ports=(Port(node.port, "REDIS_URL (the ha profile derives its ports from it)"),),
                requires=previous,
                secrets=frozenset(),  # passwords are in the 0600 configs, not the environment
            )
        )
        previous = (name,) if not node.sentinel else previous
    return services


def ha_services(settings: Settings, commands: Mapping[str, str], running: bool) -> list[Service]:
    """The `ha` profile: the cluster, then the dev stack's other lines over its sentinels."""
    cluster = ha_cluster(settings)
    nodes = cluster_services(settings, cluster)
    over = ha_settings(settings, cluster)
    sentinels = tuple(s.name for s in nodes if s.name.startswith("sentinel"))
    others = dev_services(over, {k: v for k, v in commands.items() if k != REDIS})
    env = {"REDIS_URL": over.redis_url, "STACK_SENTINEL_MASTER": cluster.master_name}
    return nodes + [
        dataclasses.replace(s, requires=sentinels, env={**s.env, **env}) for s in others
    ]
