"""Choosing the Redis backend of the test harness: pure logic, no Docker needed."""

import sys

import pytest

from stack.errors import RedisServerError
from stack.harness.backend_choice import (
    TESTCONTAINERS_DEFAULTS,
    BackendChoice,
    choose_backend,
    use_testcontainers_defaults,
)
from stack.settings import Settings


def test_testcontainers_defaults_fill_only_what_the_user_left_unset():
    environ = {"TC_HOST": "10.0.0.5"}

    in_force = use_testcontainers_defaults(environ)

    assert environ["TC_HOST"] == "10.0.0.5"
    assert environ["TESTCONTAINERS_RYUK_DISABLED"] == "true"
    assert in_force == {**TESTCONTAINERS_DEFAULTS, "TC_HOST": "10.0.0.5"}


def test_testcontainers_defaults_reach_an_already_imported_testcontainers_config(monkeypatch):
    from testcontainers.core import config as tc_config

    snapshot = (
        tc_config.testcontainers_config.tc_host_override,
        tc_config.testcontainers_config.connection_mode_override,
        tc_config.testcontainers_config._ryuk_disabled,
    )
    try:
        use_testcontainers_defaults({})
        assert tc_config.testcontainers_config.ryuk_disabled is True
        assert tc_config.testcontainers_config.tc_host_override == "127.0.0.1"
        assert tc_config.testcontainers_config.connection_mode_override.value == "docker_host"
    finally:
        (
            tc_config.testcontainers_config.tc_host_override,
            tc_config.testcontainers_config.connection_mode_override,
            tc_config.testcontainers_config._ryuk_disabled,
        ) = snapshot


def test_a_choice_travels_to_xdist_workers_as_plain_data():
    choice = BackendChoice("docker", "a Docker engine answers", image="redis:7")

    assert BackendChoice.from_dict(choice.as_dict()) == choice


def test_a_forced_backend_that_cannot_run_says_so_and_refuses_to_start():
    choice = BackendChoice("docker", "forced", image="redis:7", error="no Docker engine answers")

    assert "UNAVAILABLE: no Docker engine answers" in choice.describe()
    with pytest.raises(RedisServerError, match="no Docker engine answers"):
        choice.check()


def test_forcing_docker_without_an_engine_is_an_error_not_a_fallback(monkeypatch):
    import stack.harness.backend_choice as backend

    monkeypatch.setattr(backend, "docker_image", lambda image: (None, "no Docker engine answers"))

    choice = choose_backend(Settings.load(environ={"STACK_REDIS_BACKEND": "docker"}))

    assert choice.backend == "docker"
    assert "no Docker engine answers" in (choice.error or "")


def test_auto_falls_back_to_the_local_binary_when_no_container_can_run(monkeypatch):
    import stack.harness.backend_choice as backend

    monkeypatch.setattr(backend, "docker_image", lambda image: (None, "no Docker engine answers"))
    monkeypatch.setattr(backend, "local_problem", lambda: ("/usr/bin/redis-server", None))

    choice = choose_backend(Settings.load(environ={}))

    assert (choice.backend, choice.binary, choice.error) == ("local", "/usr/bin/redis-server", None)
    assert "no Docker engine answers" in choice.reason


def test_auto_takes_the_container_when_the_image_is_usable(monkeypatch):
    import stack.harness.backend_choice as backend

    monkeypatch.setattr(backend, "docker_image", lambda image: (image, None))

    choice = choose_backend(Settings.load(environ={"STACK_REDIS_IMAGE": "redis:7.2"}))

    assert (choice.backend, choice.image, choice.error) == ("docker", "redis:7.2", None)


def test_local_forced_never_asks_docker(monkeypatch):
    import stack.harness.backend_choice as backend

    def fail(image):
        raise AssertionError("docker was asked")

    monkeypatch.setattr(backend, "docker_image", fail)

    choice = choose_backend(Settings.load(environ={"STACK_REDIS_BACKEND": "local"}))

    assert choice.backend == "local"


def test_without_the_docker_package_the_reason_names_the_install(monkeypatch):
    import stack.harness.backend_choice as backend

    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` raises ImportError

    image, problem = backend.docker_image("redis:7")

    assert image is None
    assert "pip install" in problem
