"""The scoring server, as the gateway reaches it: one grpc.aio channel, a deadline on every call, and each gRPC
status translated to the HTTP answer a REST caller expects (problem+json via :class:`ProblemError`).

| gRPC status                       | HTTP                                             |
|-----------------------------------|--------------------------------------------------|
| INVALID_ARGUMENT                  | 422, ``field`` from the scorer's message         |
| NOT_FOUND                         | 404                                              |
| PERMISSION_DENIED                 | 403                                              |
| RESOURCE_EXHAUSTED                | 429 with ``Retry-After``                         |
| UNAVAILABLE                       | 503 with ``Retry-After``                         |
| DEADLINE_EXCEEDED                 | 504                                              |
| FAILED_PRECONDITION               | 503 (e.g. no model loaded yet)                   |
| UNAUTHENTICATED, anything else    | 502: the gateway's own set-up is at fault        |
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc
from gateway.metrics import GatewayMetrics
from gateway.problems import ProblemError

log = logging.getLogger("fraudguard.gateway")

SERVICE_NAME = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
Metadata = Sequence[tuple[str, str]]

_HTTP_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.FAILED_PRECONDITION: 503,
}
_RETRYABLE = frozenset({429, 503})


class UpstreamError(ProblemError):
    """A call to the scoring server failed; ``code`` is its gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        status = _HTTP_OF.get(code, 502)
        field = None
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            head, sep, _ = message.partition(": ")
            field = head if sep and " " not in head else None
        detail = message if status != 502 else f"the scoring service answered {code.name}: {message}"
        super().__init__(status, detail, field=field,
                         headers={"Retry-After": "1"} if status in _RETRYABLE else None)
        self.code = code


def channel_credentials(ca_file: Path | None) -> grpc.ChannelCredentials | None:
    return None if ca_file is None else grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())


class ScoringClient:
    """Calls to ``fraud.v1.ScoringService`` with a deadline; errors become :class:`UpstreamError` (and are counted
    in ``metrics``, when given)."""

    def __init__(self, target: str, *, timeout_s: float, credentials: grpc.ChannelCredentials | None = None,
                 max_message_bytes: int = 16 * 1024 * 1024, metrics: GatewayMetrics | None = None) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._channel = (grpc.aio.secure_channel(target, credentials, options=options) if credentials is not None
                         else grpc.aio.insecure_channel(target, options=options))
        self._stub = scoring_pb2_grpc.ScoringServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout_s = timeout_s
        self._metrics = metrics
        self.target = target

    async def score(self, request: scoring_pb2.ScoreRequest, metadata: Metadata) -> scoring_pb2.ScoreResponse:
        answer: scoring_pb2.ScoreResponse = await self._call(self._stub.Score, request, metadata)
        return answer

    async def score_batch(self, request: scoring_pb2.ScoreBatchRequest,
                          metadata: Metadata) -> scoring_pb2.ScoreBatchResponse:
        answer: scoring_pb2.ScoreBatchResponse = await self._call(self._stub.ScoreBatch, request, metadata)
        return answer

    async def model_info(self, metadata: Metadata) -> scoring_pb2.GetModelInfoResponse:
        answer: scoring_pb2.GetModelInfoResponse = await self._call(
            self._stub.GetModelInfo, scoring_pb2.GetModelInfoRequest(), metadata)
        return answer

    async def report_outcome(self, request: scoring_pb2.ReportOutcomeRequest,
                             metadata: Metadata) -> scoring_pb2.ReportOutcomeResponse:
        answer: scoring_pb2.ReportOutcomeResponse = await self._call(self._stub.ReportOutcome, request, metadata)
        return answer

    async def serving(self, timeout_s: float = 1.0) -> str:
        """``"serving"`` when the scoring service says so through the standard health service; else why not."""
        try:
            answer = await self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
        return "serving"

    async def _call(self, method: Any, request: Any, metadata: Metadata) -> Any:
        try:
            return await method(request, timeout=self._timeout_s, metadata=tuple(metadata))
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if self._metrics is not None:
                self._metrics.upstream_errors.labels(code.name).inc()
            if code not in _HTTP_OF:
                log.warning("scoring call failed", extra={"code": code.name, "details": exc.details()})
            raise UpstreamError(code, exc.details() or code.name) from None

    async def close(self) -> None:
        await self._channel.close()
