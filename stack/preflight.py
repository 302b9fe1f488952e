"""Preflight: every missing or unsafe setting, found up front and reported at once.

The production profile refuses to start while any ``error`` finding remains;
the dev profile only warns. Each finding names the variable that fixes it, so
one run tells an operator everything to change (not one item per restart).
The checks are pure functions of the settings and the environment; only
:func:`check_redis_auth` talks to Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack.connection import url_password
from stack.errors import InsecureSettings
from stack.redis_command import LOOPBACK_HOSTS
from stack.redis_url import is_sentinel, sentinel_urls
from stack.retry import delay_overrun_s
from stack.settings import Settings

MIN_SECRET_CHARS = 16  # shorter API keys, passwords and cookie secrets are guessable
SAFE_SERIALIZERS = ("json", "msgpack")  # pickle and yaml run code from a message
PLACEHOLDERS = frozenset({"change-me", "changeme", "secret", "password", "admin", "example"})
PROBE_TIMEOUT_S = 2.0  # a Redis that does not answer is the launcher's problem, not ours

Severity = Literal["error", "warning"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One missing or unsafe item, with the variable that fixes it."""

    problem: str
    fix: str
    variable: str
    severity: Severity = "error"

    def line(self) -> str:
        return f"{self.variable}: {self.problem}; {self.fix}"


# --- helpers --------------------------------------------------------------------


def redis_urls(settings: Settings) -> list[str]:
    """Broker and result backend, once each (a sentinel list by its first entry)."""
    urls = [settings.broker_url, settings.result_backend]
    return list(dict.fromkeys(sentinel_urls(u)[0] if is_sentinel(u) else u for u in urls))


def _weak(secret: str) -> str | None:
    """Why a secret is weak, or None."""
    if secret.strip().lower() in PLACEHOLDERS:
        return "is a placeholder"
    if len(secret) < MIN_SECRET_CHARS:
        return f"is shorter than {MIN_SECRET_CHARS} characters"
    return None


NEW_SECRET = "use a random one"
SECRET_HINT = "random secrets: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


# --- the checks (pure) ------------------------------------------------------------


def check_redis_password(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    for url in redis_urls(settings):
        password = url_password(url) or (
            settings.redis_password.get_secret_value() if settings.redis_password else None
        )
        if not password:
            yield Finding(
                f"no Redis password for {_host(url)}",
                "set STACK_REDIS_PASSWORD (or put it in the URL: redis://:PASSWORD@host:6379/0)",
                "STACK_REDIS_PASSWORD",
            )
        elif reason := _weak(password):
            yield Finding(f"the Redis password {reason}", NEW_SECRET, "STACK_REDIS_PASSWORD")


def check_redis_transport(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    for url in redis_urls(settings):
        host = urlsplit(url).hostname or ""
        if url.startswith("redis://") and host not in LOOPBACK_HOSTS:
            yield Finding(
                f"Redis at {_host(url)} is reached without TLS",
                "use a rediss:// URL with STACK_REDIS_SSL_CA_CERTS where the network is shared",
                "REDIS_URL",
                severity="warning",
            )
    if any(url.startswith("rediss://") for url in redis_urls(settings)):
        for variable, path in (
            ("STACK_REDIS_SSL_CA_CERTS", settings.redis_ssl_ca_certs),
            ("STACK_REDIS_SSL_CERTFILE", settings.redis_ssl_certfile),
            ("STACK_REDIS_SSL_KEYFILE", settings.redis_ssl_keyfile),
        ):
            if path is not None and not Path(path).is_file():
                yield Finding(f"{path} does not exist", "point it at a readable file", variable)
        if (settings.redis_ssl_certfile is None) != (settings.redis_ssl_keyfile is None):
            yield Finding(
                "a TLS client certificate needs both a certificate and its key",
                "set STACK_REDIS_SSL_CERTFILE and STACK_REDIS_SSL_KEYFILE together",
                "STACK_REDIS_SSL_KEYFILE"
                if settings.redis_ssl_keyfile is None
                else "STACK_REDIS_SSL_CERTFILE",
            )


def check_flower_auth(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else ""
    if not auth:
        yield Finding(
            "Flower has no authentication",
            "set STACK_FLOWER_BASIC_AUTH=user:password",
            "STACK_FLOWER_BASIC_AUTH",
        )
    for pair in filter(None, auth.split(",")):
        user, sep, password = pair.partition(":")
        if not sep or not user:
            yield Finding(
                "Flower basic auth is not user:password",
                "set STACK_FLOWER_BASIC_AUTH=user:password (comma-separate several)",
                "STACK_FLOWER_BASIC_AUTH",
            )
        elif reason := _weak(password):
            yield Finding(
                f"the Flower password of {user!r} {reason}", NEW_SECRET, "STACK_FLOWER_BASIC_AUTH"
            )
    if settings.flower_unauthenticated_api or environ.get("FLOWER_UNAUTHENTICATED_API"):
        yield Finding(
            "FLOWER_UNAUTHENTICATED_API is set: Flower's API would accept anyone",
            "unset FLOWER_UNAUTHENTICATED_API",
            "FLOWER_UNAUTHENTICATED_API",
        )


def check_flower_cookie_secret(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    secret = settings.flower_cookie_secret
    if secret is None or not secret.get_secret_value():
        yield Finding(
            "Flower has no explicit cookie secret (a random one logs everyone out on restart)",
            "set STACK_FLOWER_COOKIE_SECRET",
            "STACK_FLOWER_COOKIE_SECRET",
        )
    elif reason := _weak(secret.get_secret_value()):
        yield Finding(
            f"the Flower cookie secret {reason}", NEW_SECRET, "STACK_FLOWER_COOKIE_SECRET"
        )


def check_api_key(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    if settings.api_key is None or not settings.api_key.get_secret_value():
        yield Finding(
            "no API key: anyone who reaches the API can submit and replay tasks",
            "set STACK_API_KEY",
            "STACK_API_KEY",
        )
    elif reason := _weak(settings.api_key.get_secret_value()):
        yield Finding(f"the API key {reason}", NEW_SECRET, "STACK_API_KEY")


def check_serializer(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    if settings.task_serializer.lower() not in SAFE_SERIALIZERS:
        yield Finding(
            f"task serializer {settings.task_serializer!r} runs code from any message "
            "that reaches Redis",
            "set STACK_TASK_SERIALIZER=json",
            "STACK_TASK_SERIALIZER",
        )


def check_visibility_timeout(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    """Redis redelivers anything unacked after the visibility timeout: a late retry or a
    long task would run twice."""
    timeout = settings.visibility_timeout_s
    longest = delay_overrun_s(settings)
    if longest is not None:
        yield Finding(
            f"a retry delay ({longest:g} s) is not below the visibility timeout ({timeout} s), "
            "so the delayed task would also be redelivered",
            "shorten STACK_RETRY_DELAYS or raise STACK_VISIBILITY_TIMEOUT",
            "STACK_RETRY_DELAYS",
        )
    if settings.hard_timeout_s >= timeout:
        yield Finding(
            f"the hard time limit ({settings.hard_timeout_s:g} s) is not below the visibility "
            f"timeout ({timeout} s), so a long task would run twice",
            "lower TASK_TIMEOUT / STACK_TASK_HARD_TIMEOUT or raise STACK_VISIBILITY_TIMEOUT",
            "STACK_VISIBILITY_TIMEOUT",
        )


Check = Callable[[Settings, Mapping[str, str]], Iterable[Finding]]


def check_execution(settings: Settings, environ: Mapping[str, str]) -> Iterable[Finding]:
    if settings.execution != "celery":
        yield Finding(
            f"STACK_EXECUTION={settings.execution} runs tasks in the submitting process "
            "(no queue, no retries, no dead letters, status kept in that process's memory)",
            "unset STACK_EXECUTION (or set it to celery): direct execution is a dev and "
            "rollback tool",
            "STACK_EXECUTION",
        )


CHECKS: list[Check] = [
    check_redis_password,
    check_redis_transport,
    check_flower_auth,
    check_flower_cookie_secret,
    check_api_key,
    check_serializer,
    check_visibility_timeout,
    check_execution,
]


def check_settings(settings: Settings, environ: Mapping[str, str]) -> list[Finding]:
    """Every finding of every pure check."""
    return [finding for check in CHECKS for finding in check(settings, environ)]


# --- the one check that talks to Redis ----------------------------------------------


def check_redis_auth(settings: Settings) -> list[Finding]:
    """Each of our Redis servers must refuse a client that brings no password.

    A server that does not answer is not a finding here (readiness reports it).
    """
    findings = []
    for url in redis_urls(settings):
        if not is_sentinel(url) and _answers_without_password(url, settings):
            findings.append(
                Finding(
                    f"Redis at {_host(url)} answers commands without a password",
                    "start it with requirepass (the production profile's own Redis does) and "
                    "give the same password in STACK_REDIS_PASSWORD",
                    "STACK_REDIS_PASSWORD",
                )
            )
    return findings


def _answers_without_password(url: str, settings: Settings) -> bool:
    from stack.connection import ssl_options

    parts = urlsplit(url)
    client = redis.Redis(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        ssl=parts.scheme == "rediss",
        socket_timeout=PROBE_TIMEOUT_S,
        socket_connect_timeout=PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one question, one answer: no ~4 s of redis-py backoff
        **ssl_options(settings),
    )
    try:
        return bool(client.ping())
    except (redis.AuthenticationError, redis.ResponseError):
        return False  # NOAUTH / auth required: what we want
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


# --- enforcing ------------------------------------------------------------------------


def describe(findings: list[Finding], profile: str) -> str:
    """One message listing every finding, errors first."""
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    lines = []
    if errors:
        lines.append(
            f"refusing to start the {profile} profile: {len(errors)} missing or unsafe "
            f"setting{'s' if len(errors) != 1 else ''}:"
        )
        lines += [f"  - {f.line()}" for f in errors]
        lines.append(SECRET_HINT)
    if warnings:
        lines.append("warnings:")
        lines += [f"  - {f.line()}" for f in warnings]
    return "\n".join(lines)


def enforce(settings: Settings, findings: list[Finding]) -> list[Finding]:
    """Production: raise InsecureSettings naming every error. Dev: log them as warnings.

    Returns the findings that were only warned about.
    """
    if settings.profile == "production" and any(f.severity == "error" for f in findings):
        raise InsecureSettings(describe(findings, settings.profile))
    for finding in findings:
        log.warning("preflight: %s", finding.line())
    return findings


def warn_once(settings: Settings) -> list[Finding]:
    """The dev profile's one line: how many items production would refuse, and where to look."""
    findings = check_settings(settings, {})
    refused = [f for f in findings if f.severity == "error"]
    if refused:
        names = ", ".join(sorted({f.variable for f in refused}))
        log.warning(
            "preflight: the production profile would refuse %d item(s) (%s); "
            "`celery-stack preflight` lists them",
            len(refused),
            names,
        )
    return findings


def preflight(
    settings: Settings, environ: Mapping[str, str], probe_redis: bool = True
) -> list[Finding]:
    """Run every check (and the Redis probe unless told not to), then :func:`enforce`."""
    findings = check_settings(settings, environ)
    if probe_redis:
        findings += check_redis_auth(settings)
    return enforce(settings, findings)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 6379}"
