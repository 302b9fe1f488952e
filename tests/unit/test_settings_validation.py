"""Settings refuse, when they load, what used to fail later as a traceback or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.errors import SettingsError
from stack.rates import parse_rate
from stack.redis_url import check_redis_url, redact
from stack.settings import Settings

URL_VARIABLES = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def load(**env: str) -> Settings:
    return Settings.load(environ=env)


@pytest.mark.parametrize("variable", URL_VARIABLES)
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "not a Redis URL (no scheme)"),
        ("http://127.0.0.1:6379/0", "not a Redis URL (scheme 'http')"),
        ("sentinel://h:26379/0;redis://h:6379/0", "every entry must be sentinel://host:port"),
        ("sentinel://h:99999/0", "port '99999' is not a port from 1 to 65535"),
        ("redis://127.0.0.1:99999/0", "port '99999' is not a port from 1 to 65535"),
        ("redis://127.0.0.1:abc/0", "port 'abc' is not a port from 1 to 65535"),
        ("redis://127.0.0.1:0/0", "port 0"),
        ("redis://127.0.0.1:6379/abc", "database 'abc' is not a whole number"),
        ("redis://127.0.0.1:6379/0?db=x", "database 'x' is not a whole number"),
        ("redis:///0", "no host"),
        ("unix://", "needs the socket's path"),
        ("redis://a:1/0;redis://b:1/0", "a list of URLs"),
    ],
)
def test_a_malformed_redis_url_is_refused_naming_the_variable(variable, url, expected):
    with pytest.raises(SettingsError) as error:
        load(**{variable: url})
    message = str(error.value)
    assert f"{variable}: " in message and expected in message
    assert (
        "redis://[:password@]host[:port][/db]" in message
        or "e.g. redis://" in message
        or "e.g. sentinel://" in message
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@redis.example.com/3",
        "rediss://user:pw@[::1]:6380/1",
        "redis://localhost",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_good_redis_urls_pass_unchanged(url):
    assert check_redis_url(url) == url
    assert load(REDIS_URL=url).redis_url == url


def test_the_scheme_is_lower_cased_so_every_redis_check_recognises_it():
    assert check_redis_url("REDIS://h:1/0") == "redis://h:1/0"


def test_a_refused_url_never_shows_its_password():
    with pytest.raises(SettingsError) as error:
        load(REDIS_URL="redis://:hunter2@h:99999/0")
    assert "hunter2" not in str(error.value) and "redis://:***@h:99999/0" in str(error.value)
    assert redact("redis://[::1") == "<unparsable URL>"


@pytest.mark.parametrize("rate", ["garbage", "0/s", "5/x", "5/2", "5/.s", "5/0s"])
def test_a_malformed_rate_limit_is_refused_on_load_naming_the_variable_and_the_form(rate):
    with pytest.raises(SettingsError) as error:
        load(STACK_RATE_LIMITS=f"a.b=1/s,diagnostics.limited={rate}")
    message = str(error.value)
    assert "STACK_RATE_LIMITS: rate of diagnostics.limited" in message
    assert "task=rate pairs" in message


def test_rates_parse_at_the_bottom_layer():
    assert parse_rate("10/5s") == (10, 5.0)
    assert parse_rate(3) == (3, 1.0)


def test_an_unknown_serializer_is_refused_listing_the_known_ones():
    with pytest.raises(SettingsError, match=r"STACK_TASK_SERIALIZER: unknown serializer.*json"):
        load(STACK_TASK_SERIALIZER="bogus")
    assert load(STACK_TASK_SERIALIZER="MsgPack").task_serializer == "msgpack"


def test_the_dead_letter_ceiling_keeps_every_record_within_reach_of_a_page():
    with pytest.raises(SettingsError, match="STACK_DEAD_LETTER_MAX_ENTRIES"):
        load(STACK_DEAD_LETTER_MAX_ENTRIES="1000001")


def env_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "stack.env"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"API_PORT=9000\nthis is not valid\n", "line 2: cannot parse 'this is not valid'"),
        (
            b'API_PORT=9000\nSTACK_API_KEY="unterminated\n',
            "line 2: cannot parse 'STACK_API_KEY=...'",
        ),
        (b"=5\n", "line 1: cannot parse '=...'"),
        (b"FLOWER_PORT='x' junk\n", "line 1: cannot parse 'FLOWER_PORT=...'"),
        (b"API_PORT=1\nAPI_HOST\n", "line 2: 'API_HOST' has no value"),
        (b"API_PORT=1\n\xff\xfe\x00\x01", "line 2: not UTF-8 text (byte 0xff)"),
        (b"API_PORT=1\nA=\x00\n", "line 2: a NUL byte"),
    ],
    ids=[
        "no-equals",
        "unterminated-quote",
        "no-key",
        "junk-after-quote",
        "bare-key",
        "binary",
        "nul",
    ],
)
def test_an_env_file_that_does_not_parse_stops_naming_the_file_and_the_line(
    tmp_path, content, expected
):
    path = env_file(tmp_path, content)
    with pytest.raises(SettingsError) as error:
        Settings.load(env_file=path, environ={})
    assert f"env file {str(path)!r} {expected}" in str(error.value)


def test_an_unparsable_secret_is_not_shown(tmp_path):
    path = env_file(tmp_path, b'STACK_API_KEY="s3cr3t-value\n')
    with pytest.raises(SettingsError) as error:
        Settings.load(env_file=path, environ={})
    assert "s3cr3t" not in str(error.value)


def test_the_default_env_file_is_read_as_strictly(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("API_PORT=9000\noops\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=r"env file '\.env' line 2"):
        Settings.load(environ={})


def test_a_good_env_file_still_reads_comments_exports_quotes_and_a_bom(tmp_path):
    path = env_file(
        tmp_path,
        b"\xef\xbb\xbf# the stack\nexport API_PORT=9001\n"
        b'API_HOST = "0.0.0.0" # all\n\nSTACK_KEY_PREFIX=\n',
    )
    settings = Settings.load(env_file=path, environ={})
    assert (settings.api_port, settings.api_host, settings.key_prefix) == (9001, "0.0.0.0", "")
