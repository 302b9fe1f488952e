from pathlib import Path

from stack.checks.probes import AnyOf, FileWritten, HttpOk, LogLine, RedisPing, StayedUp, WorkerPing
from stack.launcher.procfile import load_procfile
from stack.launcher.profiles import build_services
from stack.launcher.services import child_env
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


STACK = ["redis", "api", "worker", "beat", "flower"]


def settings(**env: str) -> Settings:
    return Settings.load(environ={"STACK_DATA_DIR": "/tmp/stack-unit", **env})


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
    assert services["api"].url == "http://127.0.0.1:8101/ui"
    assert isinstance(services["worker"].probe, WorkerPing)
    assert services["worker"].probe.hostname == services["worker"].url
    assert isinstance(services["beat"].probe, AnyOf)
    assert [type(p) for p in services["beat"].probe.probes] == [FileWritten, LogLine, LogLine]
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


def test_children_get_unbuffered_python_our_ports_and_an_absolute_data_dir():
    env = child_env(settings(API_PORT="8101", STACK_DATA_DIR="rel/data"), {"PATH": "/usr/bin"})
    assert env["PYTHONUNBUFFERED"] == "1"
    assert (env["API_PORT"], env["FLOWER_PORT"]) == ("8101", "5555")
    assert Path(env["STACK_DATA_DIR"]).is_absolute()
    assert env["PATH"].endswith(":/usr/bin")


def test_the_stock_redis_line_runs_redis_server_directly_without_a_python_start():
    redis = build_services(settings(), load_procfile(REPO_PROCFILE))[0]
    assert "redis-server" in redis.command and "--appendonly yes" in redis.command
    assert "-m stack" not in redis.command


def test_a_custom_redis_line_runs_as_written():
    redis = build_services(settings(), {"redis": "my-redis --port 1"})[0]
    assert redis.command == "my-redis --port 1"


def test_with_a_password_the_dev_redis_line_shows_no_secret_and_gets_none(tmp_path):
    password = "dev-password-0123456789"
    dev = settings(STACK_DATA_DIR=str(tmp_path), STACK_REDIS_PASSWORD=password)
    redis = build_services(dev, load_procfile(REPO_PROCFILE))[0]
    assert password not in redis.command and "--requirepass" not in redis.command
    assert redis.command.startswith("umask 077 && exec ")
    assert (tmp_path / "redis.conf").stat().st_mode & 0o077 == 0
    env = child_env(dev, {"STACK_REDIS_PASSWORD": password}, redis)
    assert password not in "\0".join(env.values())


def test_a_custom_redis_line_keeps_every_secret_it_may_use():
    custom = build_services(settings(), {"redis": "redis-server --requirepass $PW"})[0]
    env = child_env(settings(), {"STACK_REDIS_PASSWORD": "pw-0123456789"}, custom)
    assert env["STACK_REDIS_PASSWORD"] == "pw-0123456789"


# --- a user's own Procfile: Celery lines of any name are gated by what they run -------------

USER_PROCFILE = """\
jobs: celery -A ledger worker -Q celery,reconciliation --loglevel INFO
named: python -m celery -A ledger worker -n audit@%h
clock: celery -A ledger beat --schedule .ledger-beat
dash: celery -A ledger flower --port=5566
web: gunicorn ledger.web:app
"""


def test_a_user_worker_line_of_any_name_is_gated_on_a_ping_to_its_own_node_name():
    """Before, `jobs: celery -A ledger worker` counted as ready after 0.5 s alive: the table
    came up before the worker consumed, and a task sent then waited."""
    import socket

    from stack.launcher.procfile import parse_procfile

    services = {s.name: s for s in build_services(settings(), parse_procfile(USER_PROCFILE))}
    jobs = services["jobs"]
    assert isinstance(jobs.probe, WorkerPing)
    assert jobs.probe.hostname.startswith("jobs-") and jobs.url == jobs.probe.hostname
    assert f"worker --hostname {jobs.probe.hostname} -Q celery" in jobs.command
    named = services["named"]
    assert named.probe.hostname == f"audit@{socket.gethostname()}"
    assert named.command == "python -m celery -A ledger worker -n audit@%h"
    assert isinstance(services["clock"].probe, AnyOf)
    assert services["clock"].url == ".ledger-beat"
    assert services["dash"].probe.url == "http://127.0.0.1:5566/healthcheck"
    assert isinstance(services["web"].probe, StayedUp)


def test_every_user_line_gets_the_stacks_redis_as_celerys_broker_and_backend():
    from stack.launcher.procfile import parse_procfile

    launched = settings(REDIS_URL="redis://127.0.0.1:6390/2")
    for service in build_services(launched, parse_procfile(USER_PROCFILE)):
        assert service.env["CELERY_BROKER_URL"] == "redis://127.0.0.1:6390/2"
        assert service.env["CELERY_RESULT_BACKEND"] == "redis://127.0.0.1:6390/2"


def test_a_worker_line_named_worker_without_the_stacks_hostname_is_a_user_worker():
    services = build_services(settings(), {"worker": "celery -A proj worker -l INFO"})
    (worker,) = services
    assert isinstance(worker.probe, WorkerPing)
    assert f"--hostname {worker.probe.hostname}" in worker.command
