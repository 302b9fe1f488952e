"""What a Redis URL may look like, and how one is shown: pure, so Settings checks URLs on load.

redis-py and kombu parse a URL only when they first connect: a typo'd scheme, a
port out of range or a database that is not a number surfaced as a traceback
from deep inside them (or, for the database, was silently read as 0). Settings
refuses such a URL when it loads, naming the variable; :func:`redact` is the one
way a URL is shown in a message (re-exported by :mod:`stack.connection`).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

REDIS_URL_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "sentinel"
SENTINEL_SEPARATOR = ";"  # kombu's and Celery's separator between sentinels
SENTINEL_PORT = 26379
REDIS_URL_FORM = (
    "redis://[:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/socket[?db=N] "
    "or sentinel://[:password@]host:port[/db];sentinel://host:port;... (Redis Sentinel)"
)


def redact(url: str) -> str:
    """``url`` fit for a message or a table: its password replaced by ``***``
    (in every entry of a sentinel list)."""
    if SENTINEL_SEPARATOR in url:
        return SENTINEL_SEPARATOR.join(redact(part) for part in url.split(SENTINEL_SEPARATOR))
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL: show nothing that might be a secret
        return "<unparsable URL>"
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names Redis Sentinels (kombu's and Celery's ``sentinel://`` list)."""
    return url.lower().startswith(f"{SENTINEL_SCHEME}://")


def sentinel_urls(url: str) -> list[str]:
    """The ``sentinel://`` URLs of a list, one per sentinel (empty entries dropped)."""
    return [part.strip() for part in url.split(SENTINEL_SEPARATOR) if part.strip()]


def sentinel_hosts(url: str) -> list[tuple[str, int]]:
    """(host, port) of every sentinel a ``sentinel://`` list names."""
    hosts = []
    for part in sentinel_urls(url):
        parts = urlsplit(part)
        hosts.append((parts.hostname or "127.0.0.1", parts.port or SENTINEL_PORT))
    return hosts


def sentinel_db(url: str) -> int:
    """The database of the master behind the sentinels (the first URL's, as kombu reads it)."""
    path = urlsplit(sentinel_urls(url)[0]).path.strip("/")
    return int(path) if path else 0


def check_redis_url(url: str) -> str:
    """``url`` (scheme lower-cased) when redis-py can connect with it; else a ValueError
    saying what is wrong.

    The scheme is redis, rediss, unix or sentinel; a TCP URL names a host and a port
    in 1-65535; the database is a whole number. A list (``;``) is sentinels only,
    every one of them ``sentinel://``.
    """
    if is_sentinel(url):
        return _check_sentinels(url)
    if SENTINEL_SEPARATOR in url:
        raise ValueError(
            "a list of URLs: give one Redis URL, or Sentinels as "
            f"sentinel://host:port;sentinel://host:port; expected {REDIS_URL_FORM}"
        )
    return _check_one(url)


def _check_sentinels(url: str) -> str:
    """Every entry of a sentinel list checked as one URL (scheme sentinel, host, port, db)."""
    checked = []
    for part in sentinel_urls(url):
        if not is_sentinel(part):
            raise ValueError(
                f"{redact(part)!r} in a sentinel list: every entry must be "
                "sentinel://host:port (e.g. sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380)"
            )
        checked.append(_check_one(part))
    if not checked:
        raise ValueError(f"no sentinel in the list: expected {REDIS_URL_FORM}")
    return SENTINEL_SEPARATOR.join(checked)


def _check_one(url: str) -> str:
    """One URL: scheme, host, port and database."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # urllib: "Port out of range", "Port could not be cast", ...
        raise ValueError(f"{_port_problem(url, exc)}; expected {REDIS_URL_FORM}") from None
    if parts.scheme.lower() not in (*REDIS_URL_SCHEMES, SENTINEL_SCHEME):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"not a Redis URL ({shown}): expected {REDIS_URL_FORM}")
    query = parse_qs(parts.query)
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise ValueError(f"a unix:// URL needs the socket's path: expected {REDIS_URL_FORM}")
        databases = query.get("db", [])
    else:
        if not parts.hostname:
            raise ValueError(f"no host in the URL: expected {REDIS_URL_FORM}")
        if port == 0:
            raise ValueError("port 0: expected a port from 1 to 65535, e.g. redis://host:6379/0")
        databases = [parts.path.strip("/")] if parts.path.strip("/") else []
        databases += query.get("db", [])
    for db in databases:
        if not db.isdigit():
            raise ValueError(
                f"database {db!r} is not a whole number: expected e.g. redis://host:6379/0"
            )
    return parts.scheme.lower() + url[len(parts.scheme) :]


def _port_problem(url: str, exc: ValueError) -> str:
    """urllib's complaint, said with the port it is about (when it is about the port)."""
    if "port" not in str(exc).lower():
        return f"malformed URL ({exc})"
    port = url.partition("://")[2].partition("/")[0].rpartition("@")[2].rpartition(":")[2]
    return f"port {port!r} is not a port from 1 to 65535"
