"""sentinel:// lists: parsed, checked and redacted like one URL per sentinel."""

from __future__ import annotations

import pytest

from stack.errors import SettingsError
from stack.redis_url import (
    check_redis_url,
    is_sentinel,
    redact,
    sentinel_db,
    sentinel_hosts,
)
from stack.settings import Settings

SENTINELS = "sentinel://:pw@127.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://h3"


def test_a_sentinel_list_passes_and_names_each_sentinel_its_port_and_the_masters_db():
    assert check_redis_url(SENTINELS) == SENTINELS
    assert is_sentinel(SENTINELS) and not is_sentinel("redis://h:6379/0")
    assert sentinel_hosts(SENTINELS) == [("127.0.0.1", 26379), ("10.0.0.2", 26380), ("h3", 26379)]
    assert sentinel_db(SENTINELS) == 2


def test_the_scheme_of_every_entry_is_lower_cased():
    assert check_redis_url("SENTINEL://h:1;Sentinel://h:2") == "sentinel://h:1;sentinel://h:2"


def test_redact_hides_the_password_in_every_entry():
    shown = redact("sentinel://:pw@h:1/0;sentinel://:pw@h:2/0")
    assert "pw" not in shown
    assert shown == "sentinel://:***@h:1/0;sentinel://:***@h:2/0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sentinel://h:1;redis://h:2", "every entry must be sentinel://host:port"),
        ("sentinel://h:0", "port 0"),
        ("sentinel://h:1/x", "database 'x' is not a whole number"),
        ("sentinel://", "no host"),
    ],
)
def test_a_malformed_sentinel_list_is_refused_saying_why(url, expected):
    with pytest.raises(ValueError, match=expected):
        check_redis_url(url)


def test_a_sentinel_url_needs_the_master_name_setting():
    with pytest.raises(SettingsError, match="REDIS_URL names Redis Sentinels: set STACK_SENTINEL"):
        Settings.load(environ={"REDIS_URL": SENTINELS})
    with pytest.raises(SettingsError, match="CELERY_RESULT_BACKEND names Redis Sentinels"):
        Settings.load(environ={"CELERY_RESULT_BACKEND": SENTINELS})


def test_the_master_name_and_the_sentinel_password_are_settings():
    settings = Settings.load(
        environ={
            "REDIS_URL": SENTINELS,
            "STACK_SENTINEL_MASTER": "mymaster",
            "STACK_SENTINEL_PASSWORD": "s3",
        }
    )
    assert settings.sentinel_master == "mymaster"
    assert settings.sentinel_password is not None
    assert settings.sentinel_password.get_secret_value() == "s3"
