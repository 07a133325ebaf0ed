"""``fraud.v1.ScoringService`` over grpc.aio: a thin adapter between the wire and the Scorer.

The three scoring methods take and return raw bytes: ``scoring.wire`` decodes a request
message straight into column blocks and encodes the decisions straight into the response
message, each in one Numba call per message, so no protobuf object is built per
transaction. The other methods use the generated message classes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features.keys import entity_key
from scoring.features.schema import FEATURES
from scoring.grpc_errors import grpc_errors, request_id
from scoring.record.block import MessageKind
from scoring.record.recorder import Recorder
from scoring.scorer import Scorer
from scoring.serde import MAX_ID_LEN
from scoring.wire import decode_batch, decode_single, encode_results, encode_score_response
from scoring.wire.decode import BatchMessage

if TYPE_CHECKING:
    from scoring.metrics import ScoringMetrics

log = logging.getLogger("fraudguard.scoring")

T = TypeVar("T", bound=Message)

_FRAUD_OUTCOMES = frozenset({scoring_pb2.OUTCOME_FRAUD, scoring_pb2.OUTCOME_CHARGEBACK})
_ACTION_OF_BAND = (scoring_pb2.ACTION_CHALLENGE, scoring_pb2.ACTION_REVIEW, scoring_pb2.ACTION_BLOCK)


def _timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


@dataclass(frozen=True, slots=True)
class MalformedRequest:
    """Stands in for request bytes that do not parse as the method's message."""

    message_type: str
    error: str


def _tolerant(message_type: type[Message]) -> Callable[[bytes], Message | MalformedRequest]:
    parse = message_type.FromString

    def deserialize(data: bytes) -> Message | MalformedRequest:
        try:
            return parse(data)
        except DecodeError as exc:
            return MalformedRequest(message_type.DESCRIPTOR.full_name, str(exc))

    return deserialize


def _well_formed(request: T | MalformedRequest) -> T:
    if isinstance(request, MalformedRequest):
        raise ValidationError("request", f"not a valid {request.message_type} message")
    return request


def add_scoring_service(servicer: ScoringServicer, server: grpc.aio.Server) -> None:
    """Register like the generated ``add_ScoringServiceServicer_to_server``, except that the scoring methods
    get raw bytes (decoded by ``scoring.wire``) and request bytes which do not parse get ``INVALID_ARGUMENT``
    (not grpc's ``INTERNAL``)."""
    pb = scoring_pb2
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(servicer.Score),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(servicer.ScoreStream),
        "ScoreBatch": grpc.unary_unary_rpc_method_handler(servicer.ScoreBatch),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelInfo, _tolerant(pb.GetModelInfoRequest), pb.GetModelInfoResponse.SerializeToString),
        "ReportOutcome": grpc.unary_unary_rpc_method_handler(
            servicer.ReportOutcome, _tolerant(pb.ReportOutcomeRequest), pb.ReportOutcomeResponse.SerializeToString),
    }  # fmt: skip
    name = pb.DESCRIPTOR.services_by_name["ScoringService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


class ScoringServicer:
    """Every method validates, hands columns to the Scorer, and translates the answer.

    ``metrics``: where the handlers count calls, their status and time (through ``grpc_errors``), and the
    decisions they answer; ``None`` counts nothing."""

    def __init__(self, scorer: Scorer, tokenizer: PanTokenizer, max_batch: int,
                 recorder: Recorder | None = None, metrics: ScoringMetrics | None = None) -> None:
        self._scorer = scorer
        self._tokenizer = tokenizer
        self._max_batch = max_batch
        self._recorder = recorder
        self.metrics = metrics

    @property
    def scorer(self) -> Scorer:
        return self._scorer

    # --- scoring: raw bytes in, raw bytes out ----------------------------------------------

    def score_one(self, request: bytes) -> bytes:
        """A ScoreRequest answered with its ScoreResponse; a bad transaction raises ``ValidationError``.
        With a recorder, the decision is recorded before the answer is returned."""
        started = time.perf_counter_ns()
        decoded = decode_single(request, time.time(), self._tokenizer)
        scored = self._scorer.score(decoded.batch, started)
        if self._recorder is not None:
            self._recorder.record(decoded, scored, request, MessageKind.SCORE)
        response = encode_score_response(scored, decoded.buffer, int(decoded.id_start[0]), int(decoded.id_len[0]))
        if self.metrics is not None:
            self.metrics.decided(scored.scores, scored.actions)
        return response

    def score_many(self, request: bytes, message_type: BatchMessage) -> bytes:
        """A ScoreBatchRequest or ScoreStreamRequest answered with one result per transaction, in order;
        a bad transaction gets its own error result."""
        started = time.perf_counter_ns()
        decoded = decode_batch(request, message_type, time.time(), self._tokenizer, self._max_batch)
        scored = self._scorer.score(decoded.batch, started) if len(decoded.batch) else None
        if scored is not None and self._recorder is not None:
            kind = MessageKind.BATCH if message_type is scoring_pb2.ScoreBatchRequest else MessageKind.STREAM
            self._recorder.record(decoded, scored, request, kind)
        response = encode_results(scored, decoded.buffer, decoded.id_start, decoded.id_len, decoded.failures,
                                  decoded.n_requested)
        metrics = self.metrics
        if metrics is not None:
            if scored is not None:
                metrics.decided(scored.scores, scored.actions)
            if decoded.failures:
                method = "ScoreBatch" if message_type is scoring_pb2.ScoreBatchRequest else "ScoreStream"
                metrics.item_errors(method, len(decoded.failures))
        return response

    @grpc_errors
    async def Score(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await _check_deadline(context)
        recorder = self._recorder
        if recorder is not None and not recorder.has_room():
            await recorder.admit()  # no await between here and the answer: the room is still there
        return self.score_one(request)

    @grpc_errors
    async def ScoreBatch(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await _check_deadline(context)
        recorder = self._recorder
        if recorder is not None and not recorder.has_room():
            await recorder.admit()
        return self.score_many(request, scoring_pb2.ScoreBatchRequest)

    @grpc_errors
    async def ScoreStream(self, request_iterator: AsyncIterator[bytes],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        score_many, message_type, recorder = self.score_many, scoring_pb2.ScoreStreamRequest, self._recorder
        metrics = self.metrics
        async for request in request_iterator:
            started = time.perf_counter_ns() if metrics is not None else 0
            if recorder is not None and not recorder.has_room():
                await recorder.admit()
            response = score_many(request, message_type)
            if metrics is not None:
                metrics.message_answered("ScoreStream", time.perf_counter_ns() - started)
            yield response

    # --- model and outcomes -------------------------------------------------------------

    @grpc_errors
    async def GetModelInfo(
        self, request: scoring_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.GetModelInfoResponse:
        _well_formed(request)
        model = self._scorer.model
        manifest = model.bundle.manifest
        return scoring_pb2.GetModelInfoResponse(
            model_version=manifest.version,
            features=[
                scoring_pb2.FeatureSpec(index=i, name=f.name, dtype="float32", description=f.description)
                for i, f in enumerate(FEATURES)
            ],
            thresholds=[
                scoring_pb2.ActionThreshold(action=action, min_score=float(t))
                for action, t in zip(_ACTION_OF_BAND, self._scorer.thresholds.tolist(), strict=True)
            ],
            loaded_at=_timestamp(model.loaded_at),
            created_at=_timestamp(manifest.created_at),
            training_data_fingerprint=manifest.training_data_fingerprint,
            metrics=dict(manifest.metrics),
        )

    @grpc_errors
    async def ReportOutcome(
        self, request: scoring_pb2.ReportOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ReportOutcomeResponse:
        request = _well_formed(request)
        if not request.transaction_id:
            raise ValidationError("transaction_id", "required")
        if len(request.transaction_id) > MAX_ID_LEN or not request.transaction_id.isprintable():
            raise ValidationError("transaction_id", f"at most {MAX_ID_LEN} printable characters")
        if request.outcome not in _FRAUD_OUTCOMES | {scoring_pb2.OUTCOME_LEGITIMATE}:
            raise ValidationError("outcome", "must be FRAUD, LEGITIMATE or CHARGEBACK")
        for name in ("merchant_id", "device_id"):
            value = getattr(request, name)
            if len(value) > MAX_ID_LEN or not value.isprintable():
                raise ValidationError(name, f"at most {MAX_ID_LEN} printable characters")
        now = time.time()
        known_at = now
        if request.HasField("reported_at"):
            known_at = request.reported_at.seconds + request.reported_at.nanos * 1e-9
            if not 0 < known_at <= now + 86_400:
                raise ValidationError("reported_at", "must not lie more than one day in the future")
        engine = self._scorer.engine
        remembered = engine.lookup_transaction(entity_key(request.transaction_id))
        merchant, device = remembered or (entity_key(request.merchant_id), entity_key(request.device_id))
        if merchant == 0 and device == 0:
            return scoring_pb2.ReportOutcomeResponse(applied=False)
        applied = (
            engine.apply_labels(
                np.array([merchant], np.int64),
                np.array([device], np.int64),
                np.array([request.outcome in _FRAUD_OUTCOMES]),
                np.array([known_at], np.float64),
            )
            > 0
        )
        log.info("outcome reported", extra={"outcome": scoring_pb2.Outcome.Name(request.outcome), "applied": applied,
                                            "request_id": request_id(context)})
        return scoring_pb2.ReportOutcomeResponse(applied=applied)


async def _check_deadline(context: grpc.aio.ServicerContext) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before scoring started")
