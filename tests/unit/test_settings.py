from pathlib import Path

import pytest
from pydantic import AliasChoices

from stack.errors import SettingsError
from stack.settings import Settings, settings_env


def load(**env: str) -> Settings:
    return Settings.load(environ=env)


def test_defaults_follow_the_seed_guides():
    settings = load()
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.result_backend == settings.broker_url
    assert settings.task_timeout_s == 300
    assert settings.hard_timeout_s == 600
    assert settings.result_expires_s == 3600
    assert settings.retry_delays_s == (60, 300, 900)
    assert settings.max_retries == 3
    assert (settings.api_port, settings.flower_port) == (8001, 5555)


def test_celery_urls_override_redis_url():
    settings = load(
        REDIS_URL="redis://a:1/0",
        CELERY_BROKER_URL="redis://b:2/0",
        CELERY_RESULT_BACKEND="redis://c:3/1",
    )
    assert settings.broker_url == "redis://b:2/0"
    assert settings.result_backend == "redis://c:3/1"


def test_task_timeout_sets_soft_and_hard_limits():
    assert load(TASK_TIMEOUT="10").hard_timeout_s == 20


def test_retry_delays_and_rate_limits_parse_from_comma_lists():
    settings = load(
        STACK_RETRY_DELAYS="0.2, 0.4,0.6", STACK_RATE_LIMITS="diagnostics.limited=5/s, a.b=10/m"
    )
    assert settings.retry_delays_s == (0.2, 0.4, 0.6)
    assert settings.rate_limits == {"diagnostics.limited": "5/s", "a.b": "10/m"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("API_PORT", "eighty", "API_PORT"),
        ("API_PORT", "70000", "API_PORT"),
        ("TASK_TIMEOUT", "-1", "TASK_TIMEOUT"),
        ("STACK_RETRY_DELAYS", "1,x", "comma-separated seconds"),
        ("STACK_RATE_LIMITS", "diagnostics.limited", "task=rate pairs"),
        ("STACK_PROFILE", "staging", "STACK_PROFILE"),
    ],
)
def test_a_malformed_value_names_the_variable(variable, value, expected):
    with pytest.raises(SettingsError) as error:
        load(**{variable: value})
    assert variable in str(error.value)
    assert expected in str(error.value)
    assert repr(value) in str(error.value)


def test_a_hard_limit_below_the_soft_limit_is_refused():
    with pytest.raises(SettingsError, match="STACK_TASK_HARD_TIMEOUT"):
        load(TASK_TIMEOUT="10", STACK_TASK_HARD_TIMEOUT="5")


def test_env_file_is_read_and_environment_wins(tmp_path: Path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("API_PORT=9001\nFLOWER_PORT=9002\n")
    settings = Settings.load(env_file=env_file, environ={"FLOWER_PORT": "9003"})
    assert (settings.api_port, settings.flower_port) == (9001, 9003)


def test_a_missing_env_file_named_explicitly_is_an_error(tmp_path: Path):
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(environ={"STACK_ENV_FILE": str(tmp_path / "nope.env")})


def test_settings_env_reproduces_the_settings_in_a_child_process():
    settings = load(
        REDIS_URL="redis://h:1/2",
        STACK_RETRY_DELAYS="0.1,0.25",
        STACK_RATE_LIMITS="x.y=5/s",
        STACK_API_KEY="secret",
        STACK_TASK_EVENTS="false",
        TASK_TIMEOUT="1.5",
    )
    assert Settings.load(environ=settings_env(settings)) == settings


def test_every_variable_is_documented_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        variable = str(alias.choices[0])
        assert f"`{variable}`" in readme, f"{variable} is missing from the README settings table"


def test_worker_queues_parse_from_a_comma_list_and_survive_a_child():
    settings = load(STACK_WORKER_QUEUES=" celery, mail ,")
    assert settings.worker_queues == ("celery", "mail")
    assert settings_env(settings)["STACK_WORKER_QUEUES"] == "celery,mail"
    assert Settings.load(environ=settings_env(settings)) == settings
    assert load(STACK_WORKER_QUEUES="").worker_queues is None
