"""The REST gateway as an ASGI app: routes, their roles, and what each answers.

| route                              | roles            | what                                            |
|------------------------------------|------------------|-------------------------------------------------|
| ``POST /v1/score``                 | scorer           | one transaction → its decision (gRPC Score)     |
| ``POST /v1/score:batch``           | scorer           | up to 4,096 → one result each (ScoreBatch)      |
| ``POST /v1/outcomes``              | scorer, analyst  | a label: stored, then told to the scorer        |
| ``GET /v1/decisions/{id}``         | analyst          | a recorded decision with features and labels    |
| ``GET /v1/model``                  | scorer, analyst  | the model deciding now (GetModelInfo)           |
| ``POST /v1/webhooks/stripe``       | (signature)      | Stripe events: verified, stored, acknowledged   |
| ``GET /healthz``, ``/readyz``      | —                | alive; ready when the scorer and database answer|
| ``GET /metrics``                   | —                | Prometheus                                      |

``admin`` may call every route. Roles apply when ``auth`` is on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudguard.apikeys import Role
from fraudguard.db import Database, DatabaseError
from fraudguard.proto.fraud.v1 import scoring_pb2
from gateway import problems, schemas
from gateway.convert import OUTCOMES, decision_json, model_info_json, results_json, transaction_message
from gateway.decisions import find_decision
from gateway.metrics import GatewayMetrics
from gateway.middleware import GatewayMiddleware
from gateway.outcomes import Outcome, record_outcome
from gateway.problems import ProblemError
from gateway.security import Caller, Guard, require
from gateway.stripe_inbox import StripeInbox
from gateway.upstream import ScoringClient

API_VERSION = "1.0.0"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use; made and closed by the caller of :func:`create_app` (see ``gateway.server``)."""

    db: Database
    scoring: ScoringClient
    guard: Guard
    inbox: StripeInbox
    metrics: GatewayMetrics


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


async def _services(request: Request) -> Services:  # async: FastAPI runs a plain def in a worker thread
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
Scorer = Annotated[Caller, Depends(require(Role.SCORER))]
ScorerOrAnalyst = Annotated[Caller, Depends(require(Role.SCORER, Role.ANALYST))]
Analyst = Annotated[Caller, Depends(require(Role.ANALYST))]

_AUTH = (401, 403, 429)
_UPSTREAM = (502, 503, 504)


def create_app(services: Services | None = None, *, max_body_bytes: int = 4 * 1024 * 1024,
               lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    """The app. ``services`` may be None only to render the OpenAPI document."""
    metrics = services.metrics if services is not None else GatewayMetrics()

    @asynccontextmanager
    async def no_lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="fraudguard gateway",
        version=API_VERSION,
        summary="Real-time payment-fraud scoring over REST, Stripe webhooks, labels and recorded decisions.",
        description=(
            "A REST front to the fraudguard gRPC scoring service. Errors are `application/problem+json` "
            "(RFC 9457) naming the offending field. With auth on, send `Authorization: Bearer <API key>`; "
            "roles: scorer, analyst, admin."
        ),
        lifespan=lifespan or no_lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    problems.install(app)
    app.add_middleware(GatewayMiddleware, metrics=metrics, max_body_bytes=max_body_bytes)

    @app.post("/v1/score", response_model=schemas.ScoreResponse, tags=["scoring"],
              responses=problems.responses(400, 413, 422, *_AUTH, *_UPSTREAM))
    async def score(body: schemas.ScoreRequest, caller: Scorer, services: ServicesDep) -> Response:
        """Score one transaction, inline, before authorisation."""
        request = scoring_pb2.ScoreRequest(transaction=transaction_message(body.transaction))
        answer = await services.scoring.score(request, services.guard.grpc_metadata(caller))
        decision = decision_json(answer.decision)
        services.metrics.saw_decision(decision["action"], decision["score"], decision["model_version"])
        return _json({"decision": decision})

    @app.post("/v1/score:batch", response_model=schemas.ScoreBatchResponse, tags=["scoring"],
              responses=problems.responses(400, 413, 422, *_AUTH, *_UPSTREAM))
    async def score_batch(body: schemas.ScoreBatchRequest, caller: Scorer, services: ServicesDep) -> Response:
        """Score many transactions in one call: one result per transaction, in order. A bad transaction gets its
        own error result; the others are scored."""
        request = scoring_pb2.ScoreBatchRequest(transactions=[transaction_message(t) for t in body.transactions])
        answer = await services.scoring.score_batch(request, services.guard.grpc_metadata(caller))
        results = results_json(answer.results)
        for result in results:
            if "decision" in result:
                d = result["decision"]
                services.metrics.saw_decision(d["action"], d["score"], d["model_version"])
        return _json({"results": results})

    @app.post("/v1/outcomes", response_model=schemas.OutcomeResponse, status_code=201, tags=["feedback"],
              responses={200: {"description": "this very report was stored before (a retry)",
                               "model": schemas.OutcomeResponse},
                         **problems.responses(400, 413, 422, *_AUTH, 503)})
    async def report_outcome(body: schemas.OutcomeRequest, caller: ScorerOrAnalyst,
                             services: ServicesDep) -> Response:
        """Report what happened to a scored transaction (fraud, legitimate, chargeback). Stored as a label for
        training and told to the scorer for its label-derived features."""
        reported_at = body.reported_at or datetime.now(UTC)  # UTC, not before 2000 (the schema's check)
        if reported_at > datetime.now(UTC) + timedelta(days=1):
            raise ProblemError(422, "reported_at: must not lie more than a day ahead", field="reported_at")
        outcome = Outcome(body.transaction_id, OUTCOMES[body.outcome], "api", caller.actor, reported_at, body.note,
                          body.merchant_id, body.device_id)
        stored = await _database(record_outcome(services.db, services.scoring, outcome,
                                                services.guard.grpc_metadata(caller)))
        data = {"transaction_id": body.transaction_id, "outcome": body.outcome, "source": "api",
                "reported_at": reported_at.isoformat(), "stored": stored.stored, "applied": stored.applied}
        return _json(data, 201 if stored.stored else 200)

    @app.get("/v1/decisions/{transaction_id}", response_model=schemas.StoredDecision, tags=["review"],
             responses=problems.responses(404, 422, *_AUTH, 503))
    async def get_decision(transaction_id: Annotated[str, Path(min_length=1, max_length=schemas.MAX_ID_CHARS,
                                                               pattern=r"^[\x20-\x7e]+$")],
                           caller: Analyst, services: ServicesDep, request: Request) -> Response:
        """A recorded decision: the transaction as scored (personal fields stay sealed), its feature vector,
        score, action, reasons, model and rule versions, and the labels it has received."""
        known = None
        info: scoring_pb2.GetModelInfoResponse | None = getattr(request.app.state, "model_info", None)
        if info is not None:
            known = (info.model_version, tuple(f.name for f in info.features))
        return _json(await _database(find_decision(services.db, transaction_id, known)))

    @app.get("/v1/model", response_model=schemas.ModelInfo, tags=["scoring"],
             responses=problems.responses(*_AUTH, *_UPSTREAM))
    async def model(caller: ScorerOrAnalyst, services: ServicesDep, request: Request) -> Response:
        """The model deciding now: version, feature schema, action thresholds, when it was loaded."""
        info = await services.scoring.model_info(services.guard.grpc_metadata(caller))
        request.app.state.model_info = info
        services.metrics.saw_model(info.model_version)
        return _json(model_info_json(info))

    @app.post("/v1/webhooks/stripe", response_model=schemas.WebhookReceipt, tags=["stripe"],
              responses=problems.responses(400, 413, 503),
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "description": "a Stripe Event, byte for byte as Stripe signed it"}}}}})
    async def stripe_webhook(request: Request, services: ServicesDep,
                             stripe_signature: Annotated[str | None, Header()] = None) -> Response:
        """Point a Stripe webhook endpoint here. The signature is verified against the endpoint secret; the event
        is stored and acknowledged at once and processed in the background, once (redeliveries are
        acknowledged, not redone). Payments are scored; disputes and early fraud warnings become fraud labels;
        other types are acknowledged and ignored."""
        receipt = await services.inbox.receive(await request.body(), stripe_signature)
        return _json({"received": True, "duplicate": receipt.duplicate})

    @app.get("/healthz", response_model=schemas.Health, tags=["operations"])
    async def healthz() -> Response:
        """The process is up (liveness)."""
        return _json({"status": "ok", "checks": {}})

    @app.get("/readyz", response_model=schemas.Health, tags=["operations"], responses=problems.responses(503))
    async def readyz(request: Request, services: ServicesDep) -> Response:
        """Ready only when the scoring service answers SERVING and the database answers."""
        scorer = await services.scoring.serving()
        health = await services.db.health(timeout_s=1.0)
        checks = {"scoring": scorer, "database": "ok" if health.ok else health.detail}
        if scorer == "serving" and health.ok:
            return _json({"status": "ok", "checks": checks})
        return problems.problem_response(request, 503, "not ready: " + ", ".join(
            f"{name} {state}" for name, state in checks.items() if state not in ("ok", "serving")),
            headers={"Retry-After": "1"})

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition"}})
    async def prometheus_metrics() -> Response:
        """Prometheus metrics of this gateway."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _database(call: Any) -> Any:
    try:
        return await call
    except DatabaseError as exc:
        raise ProblemError(503, f"the database is not available: {exc}", headers={"Retry-After": "1"}) from None
