"""A lean HTTP/1.1 client for the load generator: keep-alive connections, requests built in advance, httptools.

Why not httpx: measured on this machine against an empty uvicorn app, one httpx ``AsyncClient`` process tops out
near 1,500 requests/s (~0.6 ms of CPU each) and at half that over a 16-connection pool; on two cores shared with
the gateway and the scoring server, that CPU would be taken from what is being measured. Here a request is one
buffer (head and JSON body) built before the timed phase and sent in one write; the answer is parsed by httptools
(uvicorn's own parser): tens of microseconds a request, as the gRPC client's pre-serialised calls.

Only what the benchmark needs: one request at a time per connection (no pipelining), answers with a
``Content-Length`` or chunked, ``Connection: close`` honoured, a timeout around every exchange (connect, write,
whole answer), plain HTTP or HTTPS. A failure is an :class:`ExchangeError` whose ``kind`` names its cause
(``ConnectionRefusedError``, ``TimeoutError``, ``ConnectionResetError``, ``HttpParserError``, ...).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

import httptools


class ExchangeError(Exception):
    """A request got no complete answer; ``kind`` names why (the class name of the underlying error)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: ``http(s)://host:port`` and the path prefix of the URL (``""`` for none)."""

    scheme: str
    host: str
    port: int
    prefix: str

    @staticmethod
    def parse(url: str) -> Origin:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http://HOST:PORT or https://HOST:PORT, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Origin(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def build_request(origin: Origin, method: str, path: str, body: bytes | None = None) -> bytes:
    """The whole request, head and body, ready to write."""
    head = [f"{method} {origin.prefix}{path} HTTP/1.1", f"host: {origin.authority}", "accept: application/json"]
    if body is not None:
        head += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + (body or b"")


class Exchanger(Protocol):
    """What the REST client needs of a connection pool (a fake one in tests)."""

    async def exchange(self, request: bytes) -> Answer: ...

    async def close(self) -> None: ...


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``exchange`` sends a request and waits for its whole answer."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._body: list[bytes] = []
        self.reusable = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(exc or ConnectionResetError("the server closed the connection before answering"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer = Answer(self._parser.get_status_code(), b"".join(self._body))
        self._body.clear()
        if not self._parser.should_keep_alive():
            self.reusable = False
            self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    async def exchange(self, request: bytes) -> Answer:
        assert self._transport is not None and self._waiter is None, "one request at a time"
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class ConnectionPool:
    """Up to ``limit`` keep-alive connections to ``origin``, opened as needed, the last used reused first."""

    def __init__(self, origin: Origin, limit: int, timeout_s: float, tls_ca: bytes | None = None) -> None:
        self._origin = origin
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()
        self._ssl: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._ssl = ssl.create_default_context(cadata=tls_ca.decode() if tls_ca else None)

    async def exchange(self, request: bytes) -> Answer:
        """Send ``request`` on a free connection; the answer, or :class:`ExchangeError` (connection closed)."""
        async with self._slots:
            connection: _Connection | None = None
            try:
                async with asyncio.timeout(self._timeout_s):
                    connection = self._take_idle() or await self._open()
                    answer = await connection.exchange(request)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                if connection is not None:
                    connection.close()
                raise ExchangeError(type(exc).__name__, str(exc)) from exc
            except BaseException:  # cancelled mid-exchange: the connection's state is unknown
                if connection is not None:
                    connection.close()
                raise
            if connection.reusable:
                self._idle.append(connection)
            return answer

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
        return None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        server_hostname = self._origin.host if self._ssl is not None else None
        _, connection = await loop.create_connection(_Connection, self._origin.host, self._origin.port,
                                                     ssl=self._ssl, server_hostname=server_hostname)
        return connection

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        await asyncio.sleep(0)  # let the transports close
