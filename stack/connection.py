"""The Redis boundary: the one client factory, and the one place Redis errors are translated.

Every module gets its Redis client from :func:`redis_client`. Whatever raises
"Redis did not answer" (redis-py, kombu, a bare socket) is one of
:data:`REDIS_ERRORS`, and :func:`translated` turns it into one
:class:`~stack.errors.BrokerUnavailable` with one message shape: which Redis
(password redacted), what was being done, and which variable to check.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import kombu.exceptions
import redis
import redis.sentinel
from pydantic import SecretStr

from stack.errors import BrokerUnavailable
from stack.redis_url import (
    SENTINEL_SEPARATOR,
    is_sentinel,
    sentinel_db,
    sentinel_hosts,
    sentinel_urls,
)
from stack.redis_url import redact as redact  # the one redact(), here at the boundary
from stack.settings import Settings

SOCKET_TIMEOUT_S = 3.0  # a dead Redis must fail a request in seconds, never hang it

# Everything that means "Redis did not answer", raw or wrapped by kombu.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.RedisError,
    ConnectionError,
    TimeoutError,
)


def url_password(url: str) -> str | None:
    """The password a Redis URL carries (userinfo or ``?password=``), if any (for a
    sentinel list: the master's, in the first entry, as kombu and Celery read it)."""
    parts = urlsplit(sentinel_urls(url)[0] if is_sentinel(url) else url)
    if parts.password:
        return parts.password
    values = parse_qs(parts.query).get("password")
    return values[0] if values else None


def unavailable(
    exc: BaseException, url: str, doing: str, variable: str = "REDIS_URL"
) -> BrokerUnavailable:
    """The one "Redis did not answer" error: which Redis, doing what, and what to check."""
    if is_sentinel(url):
        return BrokerUnavailable(
            f"no Redis master through the sentinels {redact(url)} {doing} "
            f"({problem(exc)}); check {variable} too"
        )
    return BrokerUnavailable(
        f"Redis at {redact(url)} did not answer {doing} ({type(exc).__name__}: {exc}); "
        f"is it running? Check {variable}"
    )


SENTINEL_HINT = "check the sentinels run, STACK_SENTINEL_MASTER and STACK_SENTINEL_PASSWORD"


def problem(exc: BaseException, client: redis.Redis[bytes] | None = None) -> str:
    """Why Redis did not answer, in one short line; through sentinels, naming their settings.

    redis-py's MasterNotFoundError carries the repr of every sentinel client (hundreds of
    characters each): only the error kinds they met are kept.
    """
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        kinds = sorted(set(re.findall(r" - (?:\w+:)?(\w+Error)", str(exc))))
        name = str(exc).split("'")[1] if "'" in str(exc) else "?"
        met = f" (they met: {', '.join(kinds)})" if kinds else ""
        return f"no sentinel named a master {name!r}{met}; {SENTINEL_HINT}"
    shown = f"{type(exc).__name__}: {exc}"
    if client is not None and isinstance(
        client.connection_pool, redis.sentinel.SentinelConnectionPool
    ):
        return f"{shown}; {SENTINEL_HINT}"
    return shown


@contextmanager
def translated(url: str, doing: str, variable: str = "REDIS_URL") -> Iterator[None]:
    """Turn any of REDIS_ERRORS raised inside into :func:`unavailable`'s BrokerUnavailable."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise unavailable(exc, url, doing, variable) from exc


def ssl_options(settings: Settings) -> dict[str, Any]:
    """TLS options for a rediss:// URL, shared by our client, the broker and the backend."""
    if not settings.broker_url.startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_ssl_ca_certs:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_certs)
    if settings.redis_ssl_certfile:
        options["ssl_certfile"] = str(settings.redis_ssl_certfile)
    if settings.redis_ssl_keyfile:
        options["ssl_keyfile"] = str(settings.redis_ssl_keyfile)
    return options


def url_with_password(url: str, settings: Settings) -> str:
    """``url`` carrying STACK_REDIS_PASSWORD when it names none itself.

    kombu's Redis transport and Celery's Redis backend authenticate with the
    URL's password only, so the password setting must reach them in the URL.
    """
    if settings.redis_password is None:
        return url
    if is_sentinel(url):  # kombu and Celery read the master's password from the first entry
        first, *rest = sentinel_urls(url)
        return SENTINEL_SEPARATOR.join([_with_password(first, settings.redis_password), *rest])
    if not url.startswith(("redis://", "rediss://")):
        return url
    return _with_password(url, settings.redis_password)


def _with_password(url: str, password: SecretStr) -> str:
    """``url`` with ``password`` in its userinfo, unless it carries one already."""
    parts = urlsplit(url)
    if parts.password:
        return url
    secret = quote(password.get_secret_value(), safe="")
    netloc = f"{parts.username or ''}:{secret}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def sentinel_kwargs(settings: Settings, socket_timeout_s: float) -> dict[str, Any]:
    """How to talk to the sentinels themselves (not the master): their password, timeouts."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
    }
    if settings.sentinel_password is not None:
        options["password"] = settings.sentinel_password.get_secret_value()
    return options


def sentinel_transport_options(settings: Settings, url: str) -> dict[str, Any]:
    """kombu's and Celery's transport options for a sentinel:// URL (nothing for others)."""
    if not is_sentinel(url):
        return {}
    return {
        "master_name": settings.sentinel_master,
        "sentinel_kwargs": sentinel_kwargs(settings, SOCKET_TIMEOUT_S),
    }


def redis_client(
    settings: Settings, url: str | None = None, socket_timeout_s: float = SOCKET_TIMEOUT_S
) -> redis.Redis[bytes]:
    """A client on the broker's Redis (or ``url``), with short timeouts and TLS options;
    through a sentinel list, a client on whichever Redis they name master (it follows a
    failover: each new connection asks them again)."""
    url = url or settings.broker_url
    if is_sentinel(url):
        password = url_password(url) or (
            settings.redis_password.get_secret_value() if settings.redis_password else None
        )
        sentinels = redis.sentinel.Sentinel(
            sentinel_hosts(url), sentinel_kwargs=sentinel_kwargs(settings, socket_timeout_s)
        )
        return sentinels.master_for(
            settings.sentinel_master or "",
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=30,
            password=password,
            db=sentinel_db(url),
        )
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        health_check_interval=30,
        decode_responses=False,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        **ssl_options(settings),
    )
