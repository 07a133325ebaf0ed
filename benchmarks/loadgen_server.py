"""``--spawn-server``: run a scoring server (and, for REST, a gateway in front of it) as child processes for the
length of a benchmark.

Each listens on a free loopback port and announces it in its JSON log line ``{"msg": "serving", ..., "port": N}``
on stderr; stderr goes to a log file (in a temporary directory unless given one), which we read for that line.
They are stopped with SIGTERM, the gateway before the server.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from fraudguard.errors import UnavailableError

START_TIMEOUT_S = 180.0
DEMO_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30.0
_TAIL_LINES = 20
_LOG_POLL_S = 0.05


def ensure_demo_model(data_dir: Path) -> None:
    """Make the demo model bundle in ``data_dir`` unless a promoted bundle is there already."""
    command = [sys.executable, "-m", "fraudguard.cli", "models", "demo", "--data-dir", str(data_dir), "--if-missing"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnavailableError(f"'fraudguard models demo' did not finish within {DEMO_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-_TAIL_LINES:])
        raise UnavailableError(f"'fraudguard models demo' exited with {done.returncode}:\n{tail}")


def serving_port(line: str) -> int | None:
    """The port of a ``{"msg": "serving", "port": N}`` JSON log line, else ``None``."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    port = record.get("port") if isinstance(record, dict) and record.get("msg") == "serving" else None
    return port if isinstance(port, int) and port > 0 else None


class _LogWatcher:
    """Follows a child's log file: finds the port, keeps the last lines for error messages.

    The log goes to a file, not a pipe: the gateway writes a JSON line per request, and draining that in this
    process would take CPU from the client measuring it.
    """

    def __init__(self, path: Path, process: subprocess.Popen[bytes]) -> None:
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._path = path
        self._process = process

    def wait_for_port(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        with self._path.open(errors="replace") as stream:
            pending = ""
            while True:
                exited = self._process.poll() is not None
                pending += stream.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    self.tail.append(line.rstrip())
                    if (port := serving_port(line.strip())) is not None:
                        return port
                if exited or time.monotonic() >= deadline:
                    self.tail.append(pending.rstrip())
                    return None
                time.sleep(_LOG_POLL_S)

    def tail_text(self) -> str:
        return "\n".join(line for line in self.tail if line)


@contextlib.contextmanager
def _child(what: str, arguments: list[str], log_path: Path, start_timeout_s: float) -> Iterator[int]:
    """Run ``fraudguard ARGUMENTS`` (which must announce its port) with its log in ``log_path``; yield the port,
    SIGTERM it afterwards."""
    command = [sys.executable, "-m", "fraudguard.cli", *arguments]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        watcher = _LogWatcher(log_path, process)
        port = watcher.wait_for_port(start_timeout_s)
        if port is None:
            status = process.poll()
            why = f"exited with {status}" if status is not None else f"announced no port within {start_timeout_s:g} s"
            raise UnavailableError(f"spawned {what} {why} (log {log_path}):\n{watcher.tail_text()}")
        yield port
    finally:
        _stop(process)


@contextlib.contextmanager
def spawned_server(data_dir: Path, start_timeout_s: float = START_TIMEOUT_S,
                   log_dir: Path | None = None) -> Iterator[str]:
    """Yield ``"127.0.0.1:PORT"`` of a scoring server serving ``data_dir``; SIGTERM it afterwards.

    Its log goes to ``log_dir/scoring-server.log`` (a temporary directory when ``None``)."""
    ensure_demo_model(data_dir)
    with _log_dir(log_dir) as logs:
        arguments = ["serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
        with _child("scoring server", arguments, logs / "scoring-server.log", start_timeout_s) as port:
            yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def spawned_gateway(data_dir: Path, scoring_target: str, start_timeout_s: float = START_TIMEOUT_S,
                    log_dir: Path | None = None) -> Iterator[str]:
    """Yield ``"http://127.0.0.1:PORT"`` of a REST gateway in front of ``scoring_target``; SIGTERM it afterwards.

    It opens the database of ``data_dir`` (the embedded PostgreSQL the scoring server records into, unless
    ``FRAUDGUARD_DATABASE_URL`` names another, for both) and has no rate limit (``--rate-limit-per-s 0``): a
    benchmark sends from one address far above the default limit. Its log goes to ``log_dir/gateway.log``."""
    with _log_dir(log_dir) as logs:
        arguments = ["gateway", "--gateway-listen", "127.0.0.1:0", "--scoring-target", scoring_target,
                     "--data-dir", str(data_dir), "--rate-limit-per-s", "0"]
        with _child("gateway", arguments, logs / "gateway.log", start_timeout_s) as port:
            yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _log_dir(log_dir: Path | None) -> Iterator[Path]:
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        yield log_dir
        return
    with tempfile.TemporaryDirectory(prefix="fraudguard-bench-") as temporary:
        yield Path(temporary)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
