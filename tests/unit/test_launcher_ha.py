"""The ha profile: master, replica, three sentinels, gated in that order; the rest over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.errors import SettingsError
from stack.launcher.procfile import load_procfile
from stack.launcher.profiles import build_services
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"
NODES = ["redis-master", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def ha(tmp_path: Path, **env: str):
    settings = Settings.load(
        environ={"STACK_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:7000/0", **env}
    )
    return build_services(settings, load_procfile(REPO_PROCFILE), profile="ha")


def test_the_cluster_starts_master_then_replica_then_sentinels_on_derived_ports(tmp_path):
    services = {s.name: s for s in ha(tmp_path)}

    assert list(services)[:5] == NODES
    assert "redis" not in services
    assert services["redis-master"].requires == ()
    assert services["redis-replica"].requires == ("redis-master",)
    assert all(services[name].requires == ("redis-replica",) for name in SENTINELS)
    ports = [services[name].ports[0].number for name in NODES]
    assert ports == [7000, 7001, 27000, 27001, 27002]
    assert (tmp_path / "ha" / "sentinel-1" / "redis.conf").read_text().count("monitor") == 1


def test_every_other_service_waits_for_the_sentinels_and_is_pointed_at_them(tmp_path):
    services = {s.name: s for s in ha(tmp_path, STACK_SENTINEL_MASTER="prod")}

    for name in ("api", "worker", "beat", "flower"):
        service = services[name]
        assert service.requires == SENTINELS
        assert service.env["REDIS_URL"].count("sentinel://") == 3
        assert service.env["CELERY_BROKER_URL"].startswith("sentinel://127.0.0.1:27000/0;")
        assert service.env["STACK_SENTINEL_MASTER"] == "prod"


def test_the_password_goes_into_the_private_configs_not_the_nodes_environment(tmp_path):
    services = {s.name: s for s in ha(tmp_path, STACK_REDIS_PASSWORD="s3cret-s3cret-s3cret")}

    config = tmp_path / "ha" / "master" / "redis.conf"
    assert 'requirepass "s3cret' in config.read_text().replace("\\x2d", "-")
    assert config.stat().st_mode & 0o077 == 0
    assert "s3cret" not in services["redis-master"].command
    assert services["redis-master"].allowed_secrets == frozenset()


def test_a_sentinel_url_is_refused_by_the_ha_profile_which_runs_its_own(tmp_path):
    with pytest.raises(SettingsError, match="the ha profile runs its own sentinels"):
        ha(tmp_path, REDIS_URL="sentinel://127.0.0.1:26379", STACK_SENTINEL_MASTER="m")
