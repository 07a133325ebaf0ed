"""``fraudguard serve``: the grpc.aio scoring server, its lifecycle and its entry point.

Start: settings → logging → PAN key → entity state (restored from the last snapshot) →
promoted model bundle → rules (``rules_file``, or ``DATA_DIR/rules/active.rules`` if it exists) →
database (when recording or auth is on; embedded unless ``database_url``) → journals and decision
writer (``scoring.record.recorder``) → bind → serve, with health, reflection and, with ``auth``, the
API-key interceptor (and, with ``metrics_listen``, Prometheus ``/metrics`` over HTTP, see
``scoring.metrics``). A model watcher swaps newly promoted bundles in, a rules watcher edited rules
(``scoring.rules.watcher``); periodic tasks snapshot the state and keep the daily
partitions. SIGTERM/SIGINT: health goes NOT_SERVING, in-flight calls get
``shutdown_grace_s`` to finish, every answered decision is stored (or journaled), the state
is snapshotted, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fraudguard.apikeys import ApiKeyVerifier
from fraudguard.db import Database, DatabaseError
from fraudguard.db.configured import exit_code_of, open_database
from fraudguard.errors import BundleError
from fraudguard.exit_codes import ExitCode
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.keyfile import KeyFileError, load_or_create_key
from fraudguard.security.pan import PanTokenizer
from fraudguard.security.personal import Keyring, personal_aad
from fraudguard.service import StartupError, service_main
from fraudguard.settings import GATEWAY_ONLY, Settings, SettingsError
from scoring.auth import make_auth_interceptor
from scoring.decision import parse_bands
from scoring.features import EngineCapacity, FeatureEngine, SnapshotError
from scoring.features.engine import write_snapshot
from scoring.metrics import MetricsEndpoint, ScoringMetrics, scoring_registry
from scoring.model import ActiveModel, ModelWatcher, load_promoted
from scoring.record import DecisionWriter, JournalError, RecorderError
from scoring.record.recorder import Recorder
from scoring.rules import RuleSet
from scoring.rules.files import Fingerprint, RulesFileError, RulesSource
from scoring.rules.watcher import RulesWatcher
from scoring.scorer import OVERLAP_MIN_ROWS, Scorer
from scoring.servicer import ScoringServicer, add_scoring_service

log = logging.getLogger("fraudguard.scoring")

SERVICE_NAME = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
SNAPSHOT_NAME = "entities.npz"


def restore_engine(settings: Settings) -> FeatureEngine:
    """The entity state of the last snapshot, or a fresh one (an unusable snapshot is set aside)."""
    capacity = EngineCapacity(settings.max_cards, settings.max_entities, settings.max_recent_transactions)
    path = settings.state_dir / SNAPSHOT_NAME
    if not path.exists():
        return FeatureEngine(capacity)
    try:
        engine = FeatureEngine.load(path)
    except SnapshotError as exc:
        aside = path.with_suffix(".unusable")
        path.replace(aside)
        log.error("entity snapshot unusable; starting empty", extra={"error": str(exc), "moved_to": str(aside)})
        return FeatureEngine(capacity)
    if engine.capacity != capacity.rounded():
        log.warning(
            "snapshot capacity differs from settings; keeping the snapshot's",
            extra={"snapshot": str(engine.capacity), "settings": str(capacity.rounded())},
        )
    log.info("entity state restored", extra={"path": str(path), "cards": engine.stats().cards_tracked})
    return engine


def warm_up(scorer: Scorer, tokenizer: PanTokenizer) -> None:
    """Run the whole path (wire decode, features, model, reasons, wire encode) on a throw-away engine, so the
    first real call does not pay for loading the compiled kernels (Numba loads its on-disk cache lazily, per
    signature)."""
    scratch = ScoringServicer(Scorer(FeatureEngine(EngineCapacity(8, 8, 8)), scorer.model, None, scorer.top_reasons,
                                     rules=scorer.rules), tokenizer, max_batch=2)
    scratch.score_one(scoring_pb2.ScoreRequest(transaction=_WARM_UP_TRANSACTION).SerializeToString())
    for n in (1, 2):
        request = scoring_pb2.ScoreBatchRequest(transactions=[_WARM_UP_TRANSACTION] * n).SerializeToString()
        scratch.score_many(request, scoring_pb2.ScoreBatchRequest)


_WARM_UP_TRANSACTION = transaction_pb2.Transaction(
    transaction_id="warm-up",
    event_time=Timestamp(seconds=1_700_000_000),
    amount_minor=100,
    currency="EUR",
    card=transaction_pb2.Card(token="warm-up"),
)


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        chain = settings.tls_cert.read_bytes()
        key = settings.tls_key.read_bytes()
        ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise StartupError(ExitCode.TLS_FILES_UNREADABLE, f"TLS files: {exc}") from exc
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


@dataclass
class ScoringServer:
    """A running server; ``port`` is the bound port (useful with ``listen=...:0``), ``metrics_port`` that of
    ``/metrics`` (``None`` without ``metrics_listen``)."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    scorer: Scorer
    health: health.aio.HealthServicer
    watcher: ModelWatcher
    database: Database | None = None
    recorder: Recorder | None = None
    metrics: ScoringMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    rules_watcher: RulesWatcher | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_endpoint is None else self.metrics_endpoint.port

    async def snapshot(self) -> Path:
        """Copy the occupied state on the loop (consistent), write it off the loop."""
        path = self.settings.state_dir / SNAPSHOT_NAME
        engine = self.scorer.engine
        state = engine.sparse_state()
        await asyncio.to_thread(write_snapshot, path, engine.capacity, state)
        return path

    async def _maintain_partitions(self) -> None:
        """Keep the next days' partitions made and old ones dropped (the retention), hourly."""
        assert self.database is not None
        while True:
            await asyncio.sleep(3600)
            try:
                changes = await self.database.ensure_partitions()
                if changes.created or changes.dropped:
                    log.info("partitions maintained", extra={"created": changes.created, "dropped": changes.dropped})
            except DatabaseError as exc:
                log.warning("partition maintenance failed; will retry", extra={"error": str(exc)})

    async def _snapshot_periodically(self) -> None:
        interval = self.settings.snapshot_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                path = await self.snapshot()
                log.info("entity state snapshotted", extra={"path": str(path)})
            except OSError as exc:
                log.error("entity snapshot failed; will retry", extra={"error": str(exc)})

    def _on_new_model(self, model: ActiveModel) -> None:
        self.scorer.swap_model(model)
        log.info("model swapped in", extra={"model_version": model.bundle.manifest.version})

    def _on_new_rules(self, rules: RuleSet | None) -> None:
        self.scorer.swap_rules(rules)
        if rules is not None:
            log.info("rules swapped in", extra={"rule_set_version": rules.version, "rules": len(rules.rules),
                                                "rules_file": str(self.settings.rules_path)})

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let in-flight ones finish within ``grace``, snapshot the state; ``/metrics`` is
        served until the end."""
        try:
            await self.health.enter_graceful_shutdown()
            await self.watcher.stop()
            if self.rules_watcher is not None:
                await self.rules_watcher.stop()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.server.stop(self.settings.shutdown_grace_s if grace is None else grace)
            self.scorer.close()
            await _stop_recording(self.database, self.recorder)
            path = await self.snapshot()
        finally:
            if self.metrics_endpoint is not None:
                await asyncio.to_thread(self.metrics_endpoint.close)
        log.info("stopped", extra={"snapshot": str(path)})


async def _open_database(settings: Settings) -> Database:
    """The database (embedded unless ``database_url``), migrated, today's partitions made."""
    try:
        return await open_database(settings)
    except DatabaseError as exc:
        raise StartupError(exit_code_of(exc), str(exc)) from exc


async def _start_recording(settings: Settings, tokenizer: PanTokenizer, database: Database) -> Recorder:
    """The journals and the decision writer, started (the write-ahead journal's leftovers queued first)."""
    try:
        keyring = Keyring.load(settings.personal_key_path)
    except KeyFileError as exc:
        raise StartupError(ExitCode.KEY_FILE_UNUSABLE, str(exc)) from exc
    try:
        ahead, outage = await asyncio.to_thread(Recorder.open_journals, settings.journal_dir,
                                                settings.journal_max_bytes)
    except JournalError as exc:
        raise StartupError(ExitCode.JOURNAL_UNUSABLE, str(exc)) from exc

    def seal(column: str, transaction_id: str, text: str) -> bytes:
        return keyring.seal(text.encode(), personal_aad(column, transaction_id))

    writer = DecisionWriter(database, outage, batch_rows=settings.record_batch_rows,
                            batch_interval_s=settings.record_interval_s, queue_rows=settings.record_queue_rows,
                            full_policy=settings.record_full_policy, seal=seal, key_id=keyring.current_id)
    recorder = Recorder(writer, ahead, tokenizer)
    await recorder.start()
    return recorder


async def _stop_recording(database: Database | None, recorder: Recorder | None) -> None:
    try:
        if recorder is not None:
            try:
                await recorder.close()
            except RecorderError as exc:
                log.error("decisions could not all be stored", extra={"error": str(exc)})
    finally:
        if database is not None:
            await database.close()


async def _load_rules(source: RulesSource, required: bool) -> tuple[RuleSet | None, Fingerprint | None]:
    """The rules to serve from the start (``None``: none, the model alone decides) and their files' fingerprint."""
    fingerprint = source.fingerprint()  # before reading: an edit made meanwhile is noticed by the watcher
    if fingerprint is None:
        if required:
            raise StartupError(ExitCode.RULES_INVALID, f"{source.path}: rules file not found")
        return None, None
    try:
        rules = await asyncio.to_thread(source.load)
    except RulesFileError as exc:
        raise StartupError(ExitCode.RULES_INVALID, str(exc)) from exc
    log.info("rules loaded", extra={"rule_set_version": rules.version, "rules": len(rules.rules),
                                    "rules_file": str(source.path)})
    return rules, fingerprint


async def start_server(settings: Settings) -> ScoringServer:
    """Load everything, bind, start serving; raises ``StartupError`` with an exit code."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        key = load_or_create_key(settings.pan_key_path)
    except KeyFileError as exc:
        raise StartupError(ExitCode.KEY_FILE_UNUSABLE, str(exc)) from exc
    try:
        bands = parse_bands(settings.bands) if settings.bands else None
    except SettingsError as exc:
        raise StartupError(ExitCode.INVALID_SETTING, str(exc)) from exc
    try:
        model = await asyncio.to_thread(load_promoted, settings.models_dir, settings.onnx_threads)
    except BundleError as exc:
        raise StartupError(ExitCode.NO_MODEL_BUNDLE, str(exc)) from exc
    rules_source = RulesSource(settings.rules_path, settings.rules_lists_dir)
    rules, rules_fingerprint = await _load_rules(rules_source, required=settings.rules_file is not None)
    engine = await asyncio.to_thread(restore_engine, settings)
    # with one onnxruntime thread, reasons for large batches run on a second thread meanwhile; with more,
    # onnxruntime already keeps the cores busy
    overlap = OVERLAP_MIN_ROWS if settings.onnx_threads == 1 else None
    scorer = Scorer(engine, model, bands, settings.top_reasons, overlap_min_rows=overlap, rules=rules)
    tokenizer = PanTokenizer(key)
    await asyncio.to_thread(warm_up, scorer, tokenizer)
    # Everything loaded so far (models, compiled kernels, the state) lives as long as the process: move it out of
    # the collector's generations, so full collections do not walk it while serving (pauses of milliseconds).
    gc.collect()
    gc.freeze()

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    database = await _open_database(settings) if settings.record or settings.auth else None
    recorder = None
    try:
        if settings.record:
            assert database is not None
            recorder = await _start_recording(settings, tokenizer, database)
        running = await _bind_and_serve(settings, scorer, model, options, tokenizer, database, recorder)
    except BaseException:
        await _stop_recording(database, recorder)
        raise
    running.rules_watcher = RulesWatcher(rules_source, settings.model_poll_interval_s)
    running.rules_watcher.start(running._on_new_rules, rules_fingerprint)
    return running


def _start_metrics(settings: Settings, metrics: ScoringMetrics | None, scorer: Scorer,
                   recorder: Recorder | None) -> MetricsEndpoint | None:
    if metrics is None:
        return None
    try:
        return MetricsEndpoint.start(settings.metrics_listen, scoring_registry(metrics, scorer, recorder))
    except OSError as exc:
        raise StartupError(ExitCode.CANNOT_BIND, f"cannot serve metrics on {settings.metrics_listen}: {exc}") from exc


async def _bind_and_serve(settings: Settings, scorer: Scorer, model: ActiveModel, options: list[tuple[str, int]],
                          tokenizer: PanTokenizer, database: Database | None, recorder: Recorder | None,
                          ) -> ScoringServer:
    metrics = ScoringMetrics() if settings.metrics_listen else None
    endpoint = _start_metrics(settings, metrics, scorer, recorder)
    try:
        return await _bind_grpc_and_serve(settings, scorer, model, options, tokenizer, database, recorder, metrics,
                                          endpoint)
    except BaseException:
        if endpoint is not None:
            endpoint.close()
        raise


async def _bind_grpc_and_serve(settings: Settings, scorer: Scorer, model: ActiveModel,
                               options: list[tuple[str, int]], tokenizer: PanTokenizer, database: Database | None,
                               recorder: Recorder | None, metrics: ScoringMetrics | None,
                               metrics_endpoint: MetricsEndpoint | None) -> ScoringServer:
    interceptors = [make_auth_interceptor(ApiKeyVerifier(database))] if settings.auth and database else []
    server = grpc.aio.server(options=options, interceptors=interceptors)
    add_scoring_service(ScoringServicer(scorer, tokenizer, settings.max_batch, recorder, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    credentials = _credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError as exc:
        raise StartupError(ExitCode.CANNOT_BIND, f"cannot listen on {settings.listen}: {exc}") from exc
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

    running = ScoringServer(
        settings,
        server,
        port,
        scorer,
        health_servicer,
        ModelWatcher(settings.models_dir, settings.model_poll_interval_s, settings.onnx_threads),
        database,
        recorder,
        metrics,
        metrics_endpoint,
    )
    running.watcher.start(running._on_new_model, current_version=model.bundle.manifest.version)
    if settings.snapshot_interval_s > 0:
        running._tasks.append(asyncio.create_task(running._snapshot_periodically()))
    if database is not None:
        running._tasks.append(asyncio.create_task(running._maintain_partitions()))
    host = settings.listen.rpartition(":")[0]
    log.info(
        "serving",
        extra={
            "host": host,
            "port": port,
            "tls": credentials is not None,
            "auth": bool(interceptors),
            "recording": recorder is not None,
            "database": database.target if database is not None else None,
            "model_version": model.bundle.manifest.version,
            "rule_set_version": scorer.rules.version if scorer.rules is not None else None,
            "metrics_port": running.metrics_port,
        },
    )
    return running


async def _serve(settings: Settings) -> None:
    running = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = settings.listen.rpartition(":")[0]
    lines = [
        f"fraudguard scoring server on {host}:{running.port} — try:",
        f"  fraudguard bench --target {host}:{running.port} --rpc score --duration 5",
        f"  grpcurl -plaintext {host}:{running.port} list",
    ]
    if running.metrics_port is not None:
        metrics_host = settings.metrics_listen.rpartition(":")[0]
        lines.append(f"  curl http://{metrics_host}:{running.metrics_port}/metrics")
    lines.append(f"REST and Stripe webhooks: fraudguard gateway --data-dir {settings.data_dir} "
                 f"--scoring-target {host}:{running.port}")
    if running.database is not None:
        where = f"--data-dir {settings.data_dir}" + ("" if settings.database_url is None else " --database-url URL")
        recorded = f"recorded in {running.database.target}" if running.recorder else "not recorded"
        lines += [
            f"decisions are {recorded}",
            f"API keys: {'required' if settings.auth else 'not required (serve --auth true to require them)'}; "
            f"make the first admin key with:",
            f"  fraudguard keys create --role admin --note first-admin {where}",
        ]
    print("\n".join(lines), file=sys.stderr, flush=True)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    await running.stop()


def main(argv: list[str]) -> int:
    return service_main(argv, prog="fraudguard serve", description="Run the gRPC scoring server.", run=_serve,
                        exclude=GATEWAY_ONLY)
