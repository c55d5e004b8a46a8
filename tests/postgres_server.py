"""A real PostgreSQL server for the tests marked ``postgres`` (this module holds no tests).

``postgres_server`` (session): Debian's PostgreSQL (``initdb`` and ``pg_ctl``
from PATH or /usr/lib/postgresql/*/bin) in a fresh temporary folder, on a
free loopback port with no Unix socket, password logins only; always
stopped and deleted at the end. PostgreSQL refuses to run as root, so
under root it runs as the ``postgres`` user that Debian's package creates
(``runuser``). ``postgres_url`` (per test): a new database owned by an
unprivileged role, dropped after the test, as the URL a server is given.

Without psycopg or the PostgreSQL binaries the tests skip, saying which is
missing; with ``CI`` set they fail instead (CI installs both, so a skip
there would hide that the PostgreSQL store was never tested).
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROLE = "audiocopy"
_counter = itertools.count()


def _missing(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {why}")
    pytest.skip(why)


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running test server: where it listens, and its superuser's and test role's passwords."""

    port: int
    admin_password: str
    role_password: str
    folder: Path

    def url(self, dbname: str, *, user: str = ROLE, password: str | None = None) -> str:
        password = self.role_password if password is None else password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def admin(self):
        """A superuser connection (autocommit) to the ``postgres`` database."""
        import psycopg

        return psycopg.connect(self.url("postgres", user="postgres", password=self.admin_password),
                               autocommit=True, connect_timeout=10)


@pytest.fixture(scope="session")
def postgres_server():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (bash tools/setup_env.sh test,postgres)")
    bindir = _bindir()
    if bindir is None:
        _missing("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="audiocopy-pg-"))
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            _missing("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, pwfile, logfile = folder / "data", folder / "pw", folder / "server.log"
    server = PostgresServer(_free_port(), secrets.token_hex(12), secrets.token_hex(12), folder)
    pwfile.write_text(server.admin_password + "\n")
    if as_user:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    started = False
    try:
        _check(as_user + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
                          "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C"],
               "initdb")
        # Loopback only, no Unix socket; no fsync: a test database need not survive a power cut.
        options = (f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        _check(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60",
                          "-o", options, "start"], "pg_ctl start", logfile)
        started = True
        with server.admin() as con:
            con.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.role_password}'")
        yield server
    finally:
        if started:
            subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _check(cmd: list[str], what: str, logfile: Path | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = logfile.read_text(errors="replace")[-2000:] if logfile and logfile.exists() else ""
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}{tail}")


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database owned by the test role (so it may create tables), dropped afterwards."""
    name = f"plays_test_{os.getpid()}_{next(_counter)}"
    with postgres_server.admin() as con:
        con.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
    yield postgres_server.url(name)
    with postgres_server.admin() as con:  # FORCE: a store's idle connections may still be open
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
