"""``fraudguard serve`` (or ``fraudguard gateway``) as a real child process on a loopback port 0, read back from its
JSON log."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class ServerProcess:
    """Start with :meth:`start`; ``target`` is ``127.0.0.1:PORT``; every log line is kept in ``log_lines``."""

    data_dir: Path
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    port: int = 0
    command: str = "serve"  # or "gateway" (then --gateway-listen on port 0)
    _proc: subprocess.Popen[str] | None = None
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _pump_thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 120.0) -> ServerProcess:
        listen = "--gateway-listen" if self.command == "gateway" else "--listen"
        cmd = [sys.executable, "-m", "fraudguard.cli", self.command, listen, "127.0.0.1:0",
               "--data-dir", str(self.data_dir), *self.extra_args]
        env = {**os.environ, "FRAUDGUARD_RECORD": "false", **self.env}  # recording only where a test asks for it
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, env=env)
        assert self._proc.stderr is not None
        self._pump_thread = threading.Thread(target=self._pump, args=(self._proc.stderr,), daemon=True)
        self._pump_thread.start()
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise TimeoutError(f"server did not start within {timeout}s:\n" + "\n".join(self.log_lines)) from None
            if line is None:
                raise RuntimeError(f"server exited with {self._proc.wait()}:\n" + "\n".join(self.log_lines))
            entry = _json(line)
            if entry.get("msg") == "serving":
                self.port = int(str(entry["port"]))
                return self

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.log_lines.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        code = self._proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(10)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()

    def logs(self) -> list[dict[str, object]]:
        return [_json(line) for line in self.log_lines]


def _json(line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError:
        return {"raw": line}
    return value if isinstance(value, dict) else {"raw": line}
