"""The embedded PostgreSQL: a private server in ``DATA_DIR/postgres``, so a new user needs nothing installed.

It is started through ``pgserver`` (whose wheel carries the PostgreSQL 16 binaries) and listens only on a Unix
socket inside its own directory: no TCP port at all, so it can never clash with a server on 5432.

One server per directory, shared by every fraudguard process using that directory: :meth:`EmbeddedPostgres.start`
starts it, or reuses it when it is already running, and :meth:`EmbeddedPostgres.stop` releases this handle.
The server stops when the last handle of the last process is released (pgserver keeps the user processes' pids
in ``.handle_pids.json``; pids of processes that died without releasing are pruned here, so a killed process
never keeps the server alive forever). Data survives every stop.

As root, PostgreSQL refuses to run, and pgserver runs it as the system user ``pgserver`` (created with
``useradd`` if missing), chowns the directory to it and makes every directory above it (and above its own
binaries) traversable by others (``o+rx``, not readable files); a directory made private again while the
server runs locks it out of its own files. Prefer a non-root user in production.

The calls block (``initdb`` on first start takes seconds, a restart a fraction of one): from async code, use
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fraudguard.db.dsn import socket_dsn
from fraudguard.db.errors import EmbeddedServerError

PGDATA = "postgres"  # the server's directory inside DATA_DIR
DATABASE = "fraudguard"  # made on first start, beside the maintenance database "postgres"
_HANDLES_FILE = ".handle_pids.json"  # pgserver's list of the processes holding the server
_LOG_LINES = 8

_log = logging.getLogger(__name__)
_lock = threading.Lock()  # pgserver's own lock is per process (fcntl); this one orders our threads
_refs: dict[Path, int] = {}  # handles held by this process, per pgdata


class EmbeddedPostgres:
    """A handle on the embedded server of one data directory (see the module docstring for sharing).

    ``dsn`` reaches the ``fraudguard`` database, ``admin_dsn`` the ``postgres`` maintenance database."""

    __slots__ = ("_released", "admin_dsn", "dsn", "pgdata", "pid")

    def __init__(self, pgdata: Path, dsn: str, admin_dsn: str, pid: int) -> None:
        self.pgdata = pgdata
        self.dsn = dsn
        self.admin_dsn = admin_dsn
        self.pid = pid  # the postmaster's
        self._released = False

    @classmethod
    def start(cls, data_dir: Path, database: str = DATABASE) -> EmbeddedPostgres:
        """Start (or join) the server in ``data_dir/postgres`` and make sure ``database`` exists in it."""
        pgdata = (data_dir / PGDATA).expanduser().resolve()
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedServerError(f"cannot create the data directory {pgdata.parent}: {exc.strerror}") from exc
        with _lock:
            info = _start_server(pgdata)
            _refs[pgdata] = _refs.get(pgdata, 0) + 1
        socket_dir, port = str(info.socket_dir), info.port
        handle = cls(pgdata, socket_dsn(socket_dir, port, database), socket_dsn(socket_dir, port, "postgres"), info.pid)
        try:
            _ensure_database(socket_dir, port, database)
        except BaseException:
            handle.stop()
            raise
        return handle

    def stop(self) -> None:
        """Release this handle (once; later calls do nothing). The server stops, cleanly and fast, when this was
        the last handle of the last process holding it; otherwise it keeps running for the others."""
        with _lock:
            if self._released:
                return
            self._released = True
            count = _refs.pop(self.pgdata, 0)
            if count > 1:
                _refs[self.pgdata] = count - 1
                return
            server = _pgserver().PostgresServer._instances.get(self.pgdata)
            if server is None:
                return
            try:
                _prune_dead_handles(self.pgdata)
                server.cleanup()  # stops the server only when no other process holds it
            except Exception as exc:  # pgserver raises whatever pg_ctl or the file system raised
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL in {self.pgdata} did not stop cleanly: {exc}{_log_tail(self.pgdata)}"
                ) from exc

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def is_running(data_dir: Path) -> bool:
    """Whether a postmaster is running on ``data_dir/postgres`` (by its ``postmaster.pid``)."""
    pid_file = (data_dir / PGDATA).expanduser().resolve() / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _alive(pid)


def _pgserver() -> types.ModuleType:
    """pgserver, imported on first use. Its import asks platformdirs for the runtime directory, which warns
    when ``XDG_RUNTIME_DIR`` is unset (services, containers) before falling back to ``/tmp/runtime-UID``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        try:
            import pgserver
        except ImportError as exc:
            raise EmbeddedServerError(
                "the embedded PostgreSQL needs the pgserver package (pip install pgserver); or set the database "
                "URL to use another PostgreSQL"
            ) from exc
    return pgserver


def _start_server(pgdata: Path) -> _PostmasterInfo:
    pgserver = _pgserver()
    if os.geteuid() == 0 and pgdata not in _refs:
        _log.warning("running as root: the embedded PostgreSQL runs as system user 'pgserver' in %s", pgdata)
    _prune_dead_handles(pgdata)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        if not server.get_postmaster_info().is_running():  # this process knew it, but it stopped or crashed since
            with pgserver.PostgresServer._lock:
                server.ensure_postgres_running()
        info = server.get_postmaster_info()
    except Exception as exc:  # CalledProcessError, TimeoutExpired, OSError, pgserver's own assertions
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {pgdata} did not start: {_reason(exc)}{_private_ancestor(pgdata)}"
            f"{_log_tail(pgdata)}"
        ) from exc
    if info.socket_dir is None:
        raise EmbeddedServerError(f"the embedded PostgreSQL in {pgdata} has no Unix socket (postmaster.pid)")
    return _PostmasterInfo(pid=info.pid, socket_dir=Path(info.socket_dir), port=info.port or 5432)


@dataclass(frozen=True, slots=True)
class _PostmasterInfo:
    pid: int
    socket_dir: Path
    port: int


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop the pids of processes that died holding the server, so the last live one stops it."""
    path = pgdata / _HANDLES_FILE
    with _pgserver().PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _ensure_database(socket_dir: str, port: int, database: str) -> None:
    """``CREATE DATABASE`` unless it exists (with one retry: another process may create it at the same time)."""
    bin_dir = Path(_pgserver().postgres_server.POSTGRES_BIN_PATH)
    literal = "'" + database.replace("'", "''") + "'"
    script = (
        f"SELECT format('CREATE DATABASE %I', {literal}) "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {literal})\n\\gexec\n"
    )
    command = [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-h", socket_dir, "-p", str(port), "-U", "postgres", "-d", "postgres"]
    for attempt in (1, 2):
        try:
            subprocess.run(command, input=script, text=True, capture_output=True, check=True, timeout=30)
            return
        except subprocess.CalledProcessError as exc:
            if attempt == 2 or "already exists" not in exc.stderr:
                raise EmbeddedServerError(f"cannot create database {database!r}: {exc.stderr.strip()}") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(f"cannot create database {database!r}: {_reason(exc)}") from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{Path(str(exc.cmd[0])).name} exited with status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{Path(str(exc.cmd[0])).name} did not finish within {exc.timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _private_ancestor(pgdata: Path) -> str:
    """As root, the server runs as 'pgserver' and must traverse every directory above its own. pgserver opens
    them up at each start, but a directory made private again meanwhile (pytest does that to
    /tmp/pytest-of-root at each session start) locks the running server out of its files."""
    if os.geteuid() != 0:
        return ""
    for directory in pgdata.parents:
        with contextlib.suppress(OSError):
            if not directory.stat().st_mode & 0o001:
                return (f"; as root the server runs as user 'pgserver', which cannot enter {directory} (mode "
                        f"{directory.stat().st_mode & 0o777:o}): use a data directory all of whose parents others "
                        "may traverse, or run fraudguard as a non-root user")
    return ""


def _log_tail(pgdata: Path) -> str:
    with contextlib.suppress(OSError):
        lines = (pgdata / "log").read_text(errors="replace").splitlines()[-_LOG_LINES:]
        if lines:
            return f"\nlast lines of {pgdata / 'log'}:\n  " + "\n  ".join(lines)
    return ""
