"""PostgreSQL DSNs: check the scheme, name a server without its password, point a DSN at another database.

Only ``postgresql://`` and ``postgres://`` URLs are taken (asyncpg would read an empty string as "use the
``PG*`` environment", which is never what a fraudguard setting means). A Unix-socket server is written with a
``host=/directory`` query parameter, as libpq and asyncpg both read it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from fraudguard.db.errors import DatabaseConfigError

SCHEMES = ("postgresql", "postgres")


def check_dsn(dsn: str) -> str:
    """``dsn`` unchanged if it is a ``postgresql://`` URL; else :class:`DatabaseConfigError` (without the text,
    which may hold a password)."""
    scheme, sep, _ = dsn.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        shown = f"scheme {scheme!r}" if sep else "no scheme"
        raise DatabaseConfigError(
            f"bad database DSN: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got {shown}; "
            "leave the database URL unset to use the embedded server"
        )
    return dsn


def describe_dsn(dsn: str) -> str:
    """``user@host:port/database`` for messages and logs: never the password, never other parameters."""
    try:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or "localhost"
        port = query.get("port") or (str(parts.port) if parts.port is not None else "5432")
        user = parts.username or query.get("user") or ""
        database = parts.path.lstrip("/") or query.get("dbname") or user
    except ValueError:
        return "an unreadable DSN"
    where = f"{host} (port {port})" if host.startswith("/") else f"{host}:{port}"
    return (f"{user}@" if user else "") + where + (f"/{database}" if database else "")


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(check_dsn(dsn))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return urlunsplit(parts._replace(path="/" + quote(database, safe=""), query=urlencode(query)))


def socket_dsn(socket_dir: str, port: int, database: str, user: str = "postgres") -> str:
    """A DSN for a server listening only on a Unix socket in ``socket_dir``."""
    query = urlencode({"host": socket_dir, "port": str(port)})
    return f"postgresql://{quote(user, safe='')}@/{quote(database, safe='')}?{query}"
