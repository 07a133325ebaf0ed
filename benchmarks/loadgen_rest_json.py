"""The REST gateway's JSON for the load generator: request bodies from ``fraud.v1`` transactions, outcomes from answers.

Bodies are built and serialised (orjson) once, before the timed phase, as the gRPC path pre-serialises its
protobuf messages: ``{"transaction": {...}}`` for ``POST /v1/score``, ``{"transactions": [...]}`` for
``POST /v1/score:batch``. Fields mirror ``fraud.v1.Transaction`` (``gateway.schemas``), so they are taken from
the message's descriptor: enum values become the gateway's lower-case words (``CHANNEL_ECOMMERCE`` →
``"ecommerce"``), fields left empty are left out, as a client would, and timestamps are RFC 3339 with a zone, to
the microsecond (what the gateway's ``datetime`` keeps). A test checks the bodies against the gateway's own schema
and converter.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC
from typing import Any

import orjson
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message

from benchmarks.loadgen_client import Outcome, code_name
from fraudguard.proto.fraud.v1 import transaction_pb2

SCORE_PATH = "/v1/score"
BATCH_PATH = "/v1/score:batch"
PATHS = {"score": SCORE_PATH, "batch": BATCH_PATH}
_TIMESTAMP = "google.protobuf.Timestamp"


def transaction_json(tx: transaction_pb2.Transaction) -> dict[str, Any]:
    """``tx`` as the gateway takes it (``gateway.schemas.Transaction``): the fields that are set, by their proto
    names, so a field added to ``fraud.v1.Transaction`` is sent without a change here."""
    return _message_json(tx)


def _message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in message.ListFields():  # set fields only: proto3 leaves out empty strings, zeros, enum 0
        if field.message_type is not None and field.message_type.full_name == _TIMESTAMP:
            out[field.name] = value.ToDatetime(tzinfo=UTC).isoformat()
        elif field.message_type is not None:
            out[field.name] = _message_json(value)
        elif field.enum_type is not None:
            out[field.name] = _enum_word(field.enum_type, value)
        else:
            out[field.name] = value
    return out


def _enum_word(enum: EnumDescriptor, number: int) -> str:
    """``CHANNEL_ECOMMERCE`` of enum ``Channel`` → ``"ecommerce"`` (the gateway's lower-case words)."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return enum.values_by_number[number].name.removeprefix(prefix).lower()


def request_bodies(transactions: list[transaction_pb2.Transaction], rpc: str, batch_size: int) -> list[bytes]:
    """The JSON body of each request: one transaction for ``score``, ``batch_size`` per body for ``batch``."""
    if rpc == "score":
        return [orjson.dumps({"transaction": transaction_json(tx)}) for tx in transactions]
    if rpc != "batch":
        raise ValueError(f"the REST gateway has no {rpc!r} call (only score and batch)")
    items = [transaction_json(tx) for tx in transactions]
    return [orjson.dumps({"transactions": items[i:i + batch_size]})
            for i in range(0, len(items) - batch_size + 1, batch_size)]


def score_outcome(body: bytes) -> Outcome:
    """``{"decision": {...}}``: one transaction scored, and the decision's ``server_time_us``."""
    decision = orjson.loads(body)["decision"]
    return 1, float(decision["server_time_us"]), None


def batch_outcome(body: bytes) -> Outcome:
    """``{"results": [...]}``: decisions counted, the first decision's (batch-amortised) server time, item errors
    by the name of their gRPC status code."""
    ok = 0
    server_us: float | None = None
    errors: Counter[str] | None = None
    for result in orjson.loads(body)["results"]:
        decision = result.get("decision")
        if decision is not None:
            ok += 1
            if server_us is None:
                server_us = float(decision["server_time_us"])
        else:
            errors = errors if errors is not None else Counter()
            errors[code_name(int(result["error"]["code"]))] += 1
    return ok, server_us, errors


OUTCOMES = {"score": score_outcome, "batch": batch_outcome}
