"""``--spawn-server``: run a scoring server as a child process for the length of a benchmark.

The server listens on a free loopback port and announces it in its JSON log line
``{"msg": "serving", ..., "port": N}`` on stderr; we read it from there, keep draining
stderr (a full pipe would stall the server's logging) and stop it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fraudguard.errors import UnavailableError

START_TIMEOUT_S = 180.0
DEMO_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30.0
_TAIL_LINES = 20


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


class _StderrWatcher:
    """Reads the child's stderr to the end: finds the port, keeps the last lines for error messages."""

    def __init__(self, stream: IO[str]) -> None:
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.port: int | None = None
        self.found = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="server-stderr", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.tail.append(line.rstrip())
                if self.port is None and (port := serving_port(line.strip())) is not None:
                    self.port = port
                    self.found.set()
        self.found.set()  # end of stream: the server exited

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def tail_text(self) -> str:
        return "\n".join(self.tail)


@contextlib.contextmanager
def spawned_server(data_dir: Path, start_timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Yield ``"127.0.0.1:PORT"`` of a scoring server serving ``data_dir``; SIGTERM it afterwards."""
    ensure_demo_model(data_dir)
    command = [sys.executable, "-m", "fraudguard.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    watcher = _StderrWatcher(process.stderr)
    try:
        watcher.found.wait(start_timeout_s)
        if watcher.port is None:
            status = process.poll()
            why = f"exited with {status}" if status is not None else f"announced no port within {start_timeout_s:g} s"
            raise UnavailableError(f"spawned scoring server {why}:\n{watcher.tail_text()}")
        yield f"127.0.0.1:{watcher.port}"
    finally:
        _stop(process)
        watcher.join(STOP_TIMEOUT_S)  # reads to EOF, then closes the pipe


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
