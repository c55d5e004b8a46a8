"""Open the plays store a setting names: an SQLite file (the default) or a PostgreSQL URL.

Place in the pipeline: between the server's settings (``--store``) and the
two ``plays.base.PlayStore`` backends. A ``postgresql://`` (or
``postgres://``) URL opens ``plays.postgres.PostgresStore``; anything else is
a path to an SQLite file (``plays.store.PlaysLog``). psycopg is imported
only for a URL, so the embedded default needs none of the ``postgres`` extra.

``redact_url`` is what logs, errors and ``/api/status`` show of a URL: a
password in it (``user:secret@`` or ``?password=``) never leaves the process.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ..config.server import without_password
from .base import PlaysLogError, PlayStore

#: URL schemes that name a PostgreSQL server (libpq accepts both).
POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(text: str | Path) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` URL (a Path never is one)."""
    return isinstance(text, str) and urlsplit(text.strip()).scheme.lower() in POSTGRES_SCHEMES


def redact_url(url: str) -> str:
    """``url`` without its password (``config.server.without_password``: one rule for logs and settings)."""
    return without_password(url)


def open_store(url_or_path: str | Path, **options) -> PlayStore:
    """The plays store at ``url_or_path``, its schema brought up to date.

    url_or_path: a PostgreSQL URL (``postgresql://user[:password]@host:port/db``,
        libpq's parameters such as ``sslmode`` allowed) or an SQLite file path.
    options: keyword arguments for ``PostgresStore`` (timeouts, idle
        connections); none apply to SQLite.
    Raises ``PlaysLogError`` when the store cannot be opened (a PostgreSQL
    URL without psycopg installed, an unreachable server, a refused login,
    a database written by a newer release).
    """
    if is_postgres_url(url_or_path):
        from .postgres import PostgresStore

        return PostgresStore(str(url_or_path).strip(), **options)
    text = str(url_or_path)
    if "://" in text:
        raise PlaysLogError(f"plays store {redact_url(text)!r}: unknown URL scheme; use postgresql://... or an "
                            f"SQLite file path")
    if options:
        raise PlaysLogError(f"options {sorted(options)} apply to a PostgreSQL store only")
    from .store import PlaysLog

    return PlaysLog(Path(text))
