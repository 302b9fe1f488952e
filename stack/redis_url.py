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
REDIS_URL_FORM = (
    "redis://[:password@]host[:port][/db], rediss://... (TLS) or unix:///path/to/socket[?db=N]"
)


def redact(url: str) -> str:
    """``url`` fit for a message or a table: its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL: show nothing that might be a secret
        return "<unparsable URL>"
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def check_redis_url(url: str) -> str:
    """``url`` (scheme lower-cased) when redis-py can connect with it; else a ValueError
    saying what is wrong.

    The scheme is redis, rediss or unix (no sentinel: nothing here speaks it); a
    TCP URL names a host and a port in 1-65535; the database is a whole number.
    """
    if ";" in url:
        raise ValueError(f"a list of URLs (failover): give one Redis URL, {REDIS_URL_FORM}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # urllib: "Port out of range", "Port could not be cast", ...
        raise ValueError(f"{_port_problem(url, exc)}; expected {REDIS_URL_FORM}") from None
    if parts.scheme.lower() not in REDIS_URL_SCHEMES:
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
