from pathlib import Path

import pytest

from stack.checks.probes import StayedUp
from stack.errors import PortInUse
from stack.launcher.services import Port, Service, check_ports, stop_waves


def service(name, *ports, requires=(), external=False):
    return Service(
        name, f"run {name}", StayedUp(), ports=ports, requires=requires, external=external
    )


def taken(*numbers):
    return lambda port, host: port not in numbers


def test_a_taken_port_is_refused_naming_the_port_the_service_and_the_variable():
    services = [service("redis", Port(6390, "REDIS_URL")), service("api", Port(8101, "API_PORT"))]
    with pytest.raises(PortInUse) as refused:
        check_ports(services, is_free=taken(8101))
    assert (refused.value.service, refused.value.port, refused.value.variable) == (
        "api",
        8101,
        "API_PORT",
    )
    assert "port 8101 for api is already in use" in str(refused.value)
    assert "set API_PORT to a free port" in str(refused.value)


def test_free_ports_pass():
    check_ports([service("api", Port(8101, "API_PORT"))], is_free=taken())


def test_an_external_service_is_not_port_checked():
    check_ports([service("redis", Port(6379, "REDIS_URL"), external=True)], is_free=taken(6379))


def test_ports_are_checked_on_the_host_the_service_binds():
    seen = []
    check_ports(
        [service("api", Port(8101, "API_PORT", "0.0.0.0"))],
        is_free=lambda port, host: seen.append((port, host)) or True,
    )
    assert seen == [(8101, "0.0.0.0")]


def test_dependents_stop_together_before_redis():
    services = [service("redis"), *(service(n, requires=("redis",)) for n in ("api", "worker"))]
    assert stop_waves(services) == [["api", "worker"], ["redis"]]


def test_a_chain_stops_from_its_end():
    services = [service("a"), service("b", requires=("a",)), service("c", requires=("b",))]
    assert stop_waves(services) == [["c"], ["b"], ["a"]]


def test_a_dependency_cycle_still_stops_everything():
    services = [service("a", requires=("b",)), service("b", requires=("a",))]
    assert stop_waves(services) == [["a", "b"]]


# --- which secret each child gets -------------------------------------------------------

SECRET_ENV = {
    "STACK_API_KEY": "the-api-key-0123456789",
    "STACK_REDIS_PASSWORD": "the-redis-password-0123",
    "STACK_FLOWER_BASIC_AUTH": "ops:the-flower-password",
    "STACK_FLOWER_COOKIE_SECRET": "the-cookie-secret-0123",
}


def env_of(name, environ=None, secrets=None, **service_env):
    from stack.launcher.services import child_env
    from stack.settings import Settings

    environ = {"PATH": "/usr/bin", **SECRET_ENV, **(environ or {})}
    target = Service(name, "run", StayedUp(), env=service_env, secrets=secrets)
    return child_env(Settings.load(environ=environ), environ, target)


def secrets_in(env):
    return {name for name, value in SECRET_ENV.items() if env.get(name) == value}


def test_each_service_gets_exactly_the_secrets_of_the_table():
    from stack.launcher.services import SERVICE_SECRETS

    assert dict(SERVICE_SECRETS) == {
        "redis": set(),
        "api": {"STACK_API_KEY", "STACK_REDIS_PASSWORD"},
        "worker": {"STACK_REDIS_PASSWORD"},
        "beat": {"STACK_REDIS_PASSWORD"},
        "flower": {
            "STACK_FLOWER_BASIC_AUTH",
            "STACK_FLOWER_COOKIE_SECRET",
            "STACK_REDIS_PASSWORD",
        },
    }
    for name, granted in SERVICE_SECRETS.items():
        env = env_of(name)
        assert secrets_in(env) == granted, name
        leaked = [v for v in SECRET_ENV.values() if v in "\0".join(env.values())]
        assert len(leaked) == len(granted), (name, leaked)  # not under another name either


def test_a_procfile_line_of_your_own_gets_every_secret():
    assert secrets_in(env_of("docs")) == set(SECRET_ENV)


def test_a_service_can_say_which_secrets_it_keeps():
    assert secrets_in(env_of("redis", secrets=frozenset({"STACK_API_KEY"}))) == {"STACK_API_KEY"}


def test_flowers_own_variables_and_any_spelling_count_as_its_secrets():
    env = env_of(
        "worker",
        environ={"stack_api_key": "lower-case-key", "FLOWER_BASIC_AUTH": "ops:pw"},
    )
    assert "stack_api_key" not in env and "FLOWER_BASIC_AUTH" not in env
    flower = env_of("flower", FLOWER_BASIC_AUTH="ops:from-the-profile")
    assert flower["FLOWER_BASIC_AUTH"] == "ops:from-the-profile"


def test_without_the_redis_password_a_redis_url_loses_its_password_too():
    url = "redis://:url-password-0123456789@127.0.0.1:6390/0"
    env = env_of("redis", environ={"REDIS_URL": url, "CELERY_RESULT_BACKEND": url})
    assert env["REDIS_URL"] == env["CELERY_RESULT_BACKEND"] == "redis://127.0.0.1:6390/0"
    assert env_of("worker", environ={"REDIS_URL": url})["REDIS_URL"] == url


def test_a_child_does_not_read_the_env_file_again_for_the_secrets_it_was_not_given(tmp_path):
    from stack.settings import Settings

    operator = tmp_path / "operator.env"
    operator.write_text("STACK_API_KEY=from-the-file-0123456789\nSTACK_MAX_RETRIES=5\n")
    env = env_of("worker", environ={"STACK_ENV_FILE": str(operator)})
    assert Path(env["STACK_ENV_FILE"]).name == "launched.env"
    seen = Settings.load(environ=env)  # what the worker reads
    assert seen.api_key is None
    assert seen.max_retries == 5  # the launcher passed the file's settings on
