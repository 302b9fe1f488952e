import pytest

from stack.connection import url_password
from stack.errors import InsecureSettings
from stack.preflight import (
    check_api_key,
    check_flower_auth,
    check_flower_cookie_secret,
    check_redis_password,
    check_redis_transport,
    check_serializer,
    check_settings,
    check_visibility_timeout,
    enforce,
)
from stack.settings import Settings

STRONG = "s3cr3t-but-long-enough-0123456789"
SAFE_ENV = {
    "STACK_PROFILE": "production",
    "STACK_REDIS_PASSWORD": STRONG,
    "STACK_FLOWER_BASIC_AUTH": f"ops:{STRONG}",
    "STACK_FLOWER_COOKIE_SECRET": STRONG,
    "STACK_API_KEY": STRONG,
}


def load(**env: str) -> Settings:
    return Settings.load(environ={**SAFE_ENV, **env})


def variables(findings) -> list[str]:
    return [f.variable for f in findings]


def test_safe_production_settings_have_no_findings():
    assert check_settings(load(), {}) == []


def test_missing_redis_password_names_the_variable():
    assert variables(check_redis_password(load(STACK_REDIS_PASSWORD=""), {})) == [
        "STACK_REDIS_PASSWORD"
    ]


def test_a_password_in_the_redis_url_counts():
    settings = load(STACK_REDIS_PASSWORD="", REDIS_URL=f"redis://:{STRONG}@127.0.0.1:6379/0")
    assert list(check_redis_password(settings, {})) == []


def test_a_separate_result_backend_needs_its_own_password():
    settings = load(
        STACK_REDIS_PASSWORD="",
        CELERY_BROKER_URL=f"redis://:{STRONG}@10.0.0.1:6379/0",
        CELERY_RESULT_BACKEND="redis://10.0.0.2:6379/0",
    )
    findings = list(check_redis_password(settings, {}))
    assert len(findings) == 1 and "10.0.0.2:6379" in findings[0].problem


def test_url_password_reads_userinfo_and_query():
    assert url_password("redis://user:pw@h:1/0") == "pw"
    assert url_password("redis://h:1/0?password=pw") == "pw"
    assert url_password("redis://h:1/0") is None


def test_short_or_placeholder_secrets_are_weak():
    assert variables(check_api_key(load(STACK_API_KEY="short"), {})) == ["STACK_API_KEY"]
    assert variables(check_api_key(load(STACK_API_KEY="change-me"), {})) == ["STACK_API_KEY"]
    assert variables(check_redis_password(load(STACK_REDIS_PASSWORD="secret"), {})) == [
        "STACK_REDIS_PASSWORD"
    ]


def test_missing_api_key_is_found():
    assert variables(check_api_key(load(STACK_API_KEY=""), {})) == ["STACK_API_KEY"]


def test_missing_or_malformed_flower_auth_is_found():
    assert variables(check_flower_auth(load(STACK_FLOWER_BASIC_AUTH=""), {})) == [
        "STACK_FLOWER_BASIC_AUTH"
    ]
    assert variables(check_flower_auth(load(STACK_FLOWER_BASIC_AUTH="nocolon"), {})) == [
        "STACK_FLOWER_BASIC_AUTH"
    ]
    assert variables(check_flower_auth(load(STACK_FLOWER_BASIC_AUTH="ops:admin"), {})) == [
        "STACK_FLOWER_BASIC_AUTH"
    ]


def test_flower_unauthenticated_api_in_the_environment_is_refused():
    findings = check_flower_auth(load(), {"FLOWER_UNAUTHENTICATED_API": "true"})
    assert variables(findings) == ["FLOWER_UNAUTHENTICATED_API"]


def test_missing_cookie_secret_is_found():
    assert variables(check_flower_cookie_secret(load(STACK_FLOWER_COOKIE_SECRET=""), {})) == [
        "STACK_FLOWER_COOKIE_SECRET"
    ]


@pytest.mark.parametrize("serializer", ["pickle", "yaml", "PICKLE"])
def test_code_running_serializers_are_refused(serializer):
    findings = list(check_serializer(load(STACK_TASK_SERIALIZER=serializer), {}))
    assert variables(findings) == ["STACK_TASK_SERIALIZER"]
    assert "STACK_TASK_SERIALIZER=json" in findings[0].fix


def test_json_and_msgpack_serializers_pass():
    assert list(check_serializer(load(STACK_TASK_SERIALIZER="msgpack"), {})) == []


def test_a_retry_delay_at_the_visibility_timeout_is_refused():
    settings = load(STACK_RETRY_DELAYS="60,600", STACK_VISIBILITY_TIMEOUT="600", TASK_TIMEOUT="10")
    assert variables(check_visibility_timeout(settings, {})) == ["STACK_RETRY_DELAYS"]


def test_a_hard_time_limit_above_the_visibility_timeout_is_refused():
    settings = load(STACK_RETRY_DELAYS="1", STACK_VISIBILITY_TIMEOUT="500", TASK_TIMEOUT="300")
    assert variables(check_visibility_timeout(settings, {})) == ["STACK_VISIBILITY_TIMEOUT"]


def test_plain_redis_to_a_remote_host_is_only_a_warning():
    findings = list(check_redis_transport(load(REDIS_URL="redis://10.0.0.3:6379/0"), {}))
    assert [(f.variable, f.severity) for f in findings] == [("REDIS_URL", "warning")]


def test_tls_files_must_exist_and_come_in_pairs(tmp_path):
    cert = tmp_path / "client.crt"
    cert.write_text("x")
    settings = load(
        REDIS_URL="rediss://10.0.0.3:6378/0",
        STACK_REDIS_SSL_CA_CERTS=str(tmp_path / "missing-ca.pem"),
        STACK_REDIS_SSL_CERTFILE=str(cert),
    )
    assert sorted(variables(check_redis_transport(settings, {}))) == [
        "STACK_REDIS_SSL_CA_CERTS",
        "STACK_REDIS_SSL_KEYFILE",
    ]


def test_nothing_configured_lists_every_missing_item_in_one_error():
    settings = Settings.load(environ={"STACK_PROFILE": "production"})
    with pytest.raises(InsecureSettings) as caught:
        enforce(settings, check_settings(settings, {}))
    message = str(caught.value)
    for variable in (
        "STACK_REDIS_PASSWORD",
        "STACK_FLOWER_BASIC_AUTH",
        "STACK_FLOWER_COOKIE_SECRET",
        "STACK_API_KEY",
    ):
        assert variable in message
    assert message.startswith("refusing to start the production profile: 4 ")


def test_dev_profile_only_warns(caplog):
    settings = Settings.load(environ={"STACK_PROFILE": "dev", "STACK_TASK_SERIALIZER": "pickle"})
    warned = enforce(settings, check_settings(settings, {}))
    assert "STACK_TASK_SERIALIZER" in variables(warned)
    assert "STACK_TASK_SERIALIZER" in caplog.text


def test_production_warnings_alone_do_not_refuse():
    settings = load(REDIS_URL="redis://10.0.0.3:6379/0")
    assert variables(enforce(settings, check_settings(settings, {}))) == ["REDIS_URL"]


def test_the_dev_profile_warns_in_one_line(caplog):
    from stack.preflight import warn_once

    warn_once(Settings.load(environ={}))
    assert len(caplog.records) == 1
    assert "STACK_API_KEY" in caplog.text and "celery-stack preflight" in caplog.text
