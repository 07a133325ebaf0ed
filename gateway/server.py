"""``fraudguard gateway``: the REST gateway's process: settings → database → services → uvicorn.

Start: settings (flags and ``FRAUDGUARD_*``) → logging → the database (embedded in DATA_DIR unless
``database_url``; the same one the scoring server records into) → personal-data keys (Stripe payloads are sealed
with them while they wait) → API-key verifier (``auth``) → gRPC channel to ``scoring_target`` → the Stripe
workers → bind → serve (uvicorn with httptools, on a uvloop event loop: +10–30 % requests/s over asyncio's,
measured). SIGTERM/SIGINT: stop accepting, let requests in flight finish, stop the workers (an event they hold
stays pending and is taken up again), close the channel and the database, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from dataclasses import dataclass

import uvicorn
import uvloop

from fraudguard.apikeys import ApiKeyVerifier
from fraudguard.db import Database, DatabaseError
from fraudguard.db.configured import exit_code_of, open_database
from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.security.keyfile import KeyFileError
from fraudguard.security.personal import Keyring
from fraudguard.service import StartupError, service_main
from fraudguard.settings import GATEWAY_SETTINGS, Settings
from gateway.app import Services, create_app
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from gateway.security import Guard
from gateway.stripe_inbox import StripeInbox, StripeWorkers, validate_secret
from gateway.upstream import ScoringClient, channel_credentials

log = logging.getLogger("fraudguard.gateway")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: ``_run`` installs handlers that stop it, and the process
    exits 0 (uvicorn's would re-raise SIGTERM after shutting down, so the exit status would be "killed")."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


@dataclass
class RunningGateway:
    """A started gateway (``port`` is the bound one); :meth:`serve` runs it until a signal or :meth:`stop`."""

    settings: Settings
    services: Services
    workers: StripeWorkers
    server: uvicorn.Server
    sock: socket.socket
    port: int

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await self.close()

    def stop(self) -> None:
        self.server.should_exit = True

    async def close(self) -> None:
        await self.workers.stop()
        await self.services.scoring.close()
        await self.services.db.close()


def _bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it (Linux): uvicorn writes a response's head and body separately, and with
    # Nagle on, the body waits for the client's delayed ACK of the head — 40 ms per keep-alive request, measured
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartupError(ExitCode.CANNOT_BIND, f"cannot listen on {listen}: {exc}") from exc
    sock.setblocking(False)
    return sock


async def start_gateway(settings: Settings) -> RunningGateway:
    """Open everything and bind; raises :class:`StartupError` with the documented exit code."""
    try:
        validate_secret(settings.stripe_webhook_secret)
    except ValidationError as exc:
        raise StartupError(ExitCode.INVALID_SETTING, str(exc)) from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        keyring = Keyring.load(settings.personal_key_path)
    except KeyFileError as exc:
        raise StartupError(ExitCode.KEY_FILE_UNUSABLE, str(exc)) from exc
    try:
        credentials = channel_credentials(settings.scoring_tls_ca)
    except OSError as exc:
        raise StartupError(ExitCode.TLS_FILES_UNREADABLE, f"scoring_tls_ca: {exc}") from exc
    try:
        db: Database = await open_database(settings)
    except DatabaseError as exc:
        raise StartupError(exit_code_of(exc), str(exc)) from exc
    try:
        sock = _bind(settings.gateway_listen)
    except BaseException:
        await db.close()
        raise
    metrics = GatewayMetrics()
    scoring = ScoringClient(settings.scoring_target, timeout_s=settings.scoring_timeout_s, credentials=credentials,
                            max_message_bytes=max(settings.max_message_bytes, settings.max_body_bytes * 2),
                            metrics=metrics)
    limiter = (RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
               if settings.rate_limit_per_s > 0 else None)
    guard = Guard(ApiKeyVerifier(db) if settings.auth else None, limiter, metrics, settings.scoring_api_key)
    inbox = StripeInbox(db, keyring, settings.stripe_webhook_secret, settings.stripe_tolerance_s, metrics)
    services = Services(db, scoring, guard, inbox, metrics)
    own_metadata = guard.grpc_metadata_for_self()
    workers = StripeWorkers(db, keyring, scoring, own_metadata, metrics, inbox, workers=settings.stripe_workers)
    app = create_app(services, max_body_bytes=settings.max_body_bytes)
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False, lifespan="off",
                            loop="auto", http="auto", timeout_graceful_shutdown=int(settings.shutdown_grace_s) or 1,
                            limit_concurrency=None, h11_max_incomplete_event_size=64 * 1024)
    server = _Server(config)
    workers.start()
    port = sock.getsockname()[1]
    log.info("serving", extra={"port": port, "host": settings.gateway_listen.rpartition(":")[0],
                               "scoring_target": settings.scoring_target, "auth": settings.auth,
                               "database": db.target, "stripe_webhooks": bool(settings.stripe_webhook_secret)})
    return RunningGateway(settings, services, workers, server, sock, port)


def main(argv: list[str]) -> int:
    return service_main(argv, prog="fraudguard gateway", run=_run, only=GATEWAY_SETTINGS,
                        description="Run the REST gateway in front of a scoring server.",
                        loop_factory=uvloop.new_event_loop)


async def _run(settings: Settings) -> None:
    running = await start_gateway(settings)
    host = settings.gateway_listen.rpartition(":")[0]
    base = f"http://{host}:{running.port}"
    print("\n".join([
        f"fraudguard gateway on {base} (scoring service at {settings.scoring_target}) — try:",
        f"  curl {base}/readyz",
        f"  open {base}/docs for the API; Stripe webhook endpoint: {base}/v1/webhooks/stripe",
    ]), file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, running.stop)
    await running.serve()
    log.info("stopped")
