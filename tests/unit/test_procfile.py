from pathlib import Path

import pytest

from stack.checks.probes import AnyOf, FileWritten, HttpOk, LogLine, RedisPing, StayedUp, WorkerPing
from stack.errors import ServiceFailed, SettingsError
from stack.launcher.services import (
    build_services,
    child_env,
    load_procfile,
    parse_procfile,
    redis_foreground_command,
)
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"
STACK = ["redis", "api", "worker", "beat", "flower"]


def settings(**env: str) -> Settings:
    return Settings.load(environ={"STACK_DATA_DIR": "/tmp/stack-unit", **env})


def test_the_repo_procfile_has_one_line_per_service_in_start_order():
    assert list(load_procfile(REPO_PROCFILE)) == STACK


def test_procfile_lines_run_without_the_launcher_thanks_to_defaults():
    lines = load_procfile(REPO_PROCFILE)
    assert "${API_PORT:-8001}" in lines["api"]
    assert "${FLOWER_PORT:-5555}" in lines["flower"]
    assert "${STACK_DATA_DIR:-.stack}" in lines["beat"]


def test_the_dev_worker_skips_mingle_and_gossip_but_keeps_heartbeats_for_flower():
    worker = load_procfile(REPO_PROCFILE)["worker"]
    assert "--without-mingle" in worker and "--without-gossip" in worker
    assert "--without-heartbeat" not in worker


def test_parse_procfile_keeps_file_order_and_ignores_comments():
    text = "# a comment\nweb: serve --port 1\n\nworker: work\n"
    assert parse_procfile(text) == {"web": "serve --port 1", "worker": "work"}


def test_a_duplicate_process_name_is_a_settings_error():
    with pytest.raises(SettingsError, match="unique"):
        parse_procfile("web: a\nweb: b\n")


def test_a_missing_procfile_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(SettingsError, match=r"nope.*--procfile"):
        load_procfile(tmp_path / "nope")


def test_an_empty_procfile_is_refused(tmp_path):
    path = tmp_path / "Procfile"
    path.write_text("# nothing\n")
    with pytest.raises(SettingsError, match="no `name: command` line"):
        load_procfile(path)


def test_every_service_needs_redis_and_redis_needs_nothing():
    services = build_services(settings(), load_procfile(REPO_PROCFILE))
    assert [s.name for s in services] == STACK
    requires = {s.name: s.requires for s in services}
    assert requires == {"redis": (), **{name: ("redis",) for name in STACK[1:]}}


def test_each_known_service_gets_its_probe_and_url():
    services = {
        s.name: s
        for s in build_services(
            settings(API_PORT="8101", FLOWER_PORT="5601"), load_procfile(REPO_PROCFILE)
        )
    }
    assert isinstance(services["redis"].probe, RedisPing)
    assert isinstance(services["api"].probe, HttpOk)
    assert services["api"].probe.url == "http://127.0.0.1:8101/health"
    assert services["api"].url == "http://127.0.0.1:8101/docs"
    assert isinstance(services["worker"].probe, WorkerPing)
    assert services["worker"].probe.hostname == services["worker"].url
    assert isinstance(services["beat"].probe, AnyOf)
    assert [type(p) for p in services["beat"].probe.probes] == [FileWritten, LogLine]
    assert services["flower"].url == "http://127.0.0.1:5601/"
    assert services["flower"].probe.url == "http://127.0.0.1:5601/healthcheck"


def test_ports_to_check_name_the_variable_that_moves_them():
    services = build_services(
        settings(REDIS_URL="redis://127.0.0.1:6399/0"), load_procfile(REPO_PROCFILE)
    )
    ports = {s.name: [(p.number, p.variable) for p in s.ports] for s in services}
    assert ports["redis"] == [(6399, "REDIS_URL")]
    assert ports["api"] == [(8001, "API_PORT")]
    assert ports["flower"] == [(5555, "FLOWER_PORT")]
    assert ports["worker"] == ports["beat"] == []


def test_a_redis_that_already_answers_is_external_with_no_port_to_check():
    services = build_services(settings(), load_procfile(REPO_PROCFILE), redis_running=True)
    redis = services[0]
    assert redis.external and redis.ports == ()


def test_the_worker_is_told_the_prefixed_queues_and_its_unique_hostname():
    services = build_services(settings(STACK_QUEUE_PREFIX="t1."), load_procfile(REPO_PROCFILE))
    worker = next(s for s in services if s.name == "worker")
    assert worker.env["STACK_WORKER_QUEUES"] == (
        "t1.default,t1.file_processing,t1.query_processing,t1.maintenance"
    )
    assert worker.env["STACK_WORKER_HOSTNAME"] == worker.url


def test_an_extra_procfile_line_runs_after_redis_and_is_ready_once_it_stays_up():
    lines = {**load_procfile(REPO_PROCFILE), "docs": "python -m http.server"}
    docs = build_services(settings(), lines)[-1]
    assert (docs.name, docs.requires) == ("docs", ("redis",))
    assert isinstance(docs.probe, StayedUp)


def test_only_drops_the_dependencies_it_leaves_out():
    services = build_services(settings(), load_procfile(REPO_PROCFILE), only=["worker", "beat"])
    assert [(s.name, s.requires) for s in services] == [("worker", ()), ("beat", ())]


def test_only_with_an_unknown_name_lists_what_the_procfile_has():
    with pytest.raises(SettingsError, match=r"nginx.*redis, api, worker, beat, flower"):
        build_services(settings(), load_procfile(REPO_PROCFILE), only=["nginx"])


def test_an_unknown_profile_is_a_settings_error():
    with pytest.raises(SettingsError, match="profile 'staging'"):
        build_services(settings(), load_procfile(REPO_PROCFILE), profile="staging")


def test_children_get_unbuffered_python_our_ports_and_an_absolute_data_dir():
    env = child_env(settings(API_PORT="8101", STACK_DATA_DIR="rel/data"), {"PATH": "/usr/bin"})
    assert env["PYTHONUNBUFFERED"] == "1"
    assert (env["API_PORT"], env["FLOWER_PORT"]) == ("8101", "5555")
    assert Path(env["STACK_DATA_DIR"]).is_absolute()
    assert env["PATH"].endswith(":/usr/bin")


def test_the_redis_line_serves_the_url_port_with_aof_in_the_data_dir(tmp_path):
    command = redis_foreground_command(
        Settings.load(
            environ={"REDIS_URL": "redis://127.0.0.1:6400/0", "STACK_DATA_DIR": str(tmp_path)}
        )
    )
    joined = " ".join(command)
    assert "--port 6400" in joined and "--appendonly yes" in joined
    assert f"--dir {tmp_path}" in joined and "--bind 127.0.0.1" in joined


def test_the_redis_line_refuses_a_remote_url_it_could_not_serve():
    with pytest.raises(ServiceFailed, match=r"redis\.example\.com:6379.*REDIS_URL"):
        redis_foreground_command(settings(REDIS_URL="redis://redis.example.com:6379/0"))


def test_the_stock_redis_line_runs_redis_server_directly_without_a_python_start():
    redis = build_services(settings(), load_procfile(REPO_PROCFILE))[0]
    assert "redis-server" in redis.command and "--appendonly yes" in redis.command
    assert "-m stack" not in redis.command


def test_a_custom_redis_line_runs_as_written():
    redis = build_services(settings(), {"redis": "my-redis --port 1"})[0]
    assert redis.command == "my-redis --port 1"
