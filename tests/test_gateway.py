"""The REST gateway end to end: a real gateway in front of a real scoring server, over HTTP, one real database."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.gateway_stack import Stack, running_stack, tx_json


@pytest.fixture
async def stack(data_dir: Path, dsn: str) -> AsyncIterator[Stack]:
    """On the embedded PostgreSQL, and on the machine's own when FRAUDGUARD_TEST_DSN names it."""
    async with running_stack(data_dir, dsn) as running:
        yield running


async def test_score_returns_a_decision_and_it_is_recorded(stack: Stack) -> None:
    response = await stack.http.post("/v1/score", json={"transaction": tx_json(1)})
    assert response.status_code == 200, response.text
    decision = response.json()["decision"]
    assert decision["transaction_id"] == "rest-1"
    assert 0.0 <= decision["score"] <= 1.0
    assert decision["action"] in {"allow", "challenge", "review", "block"}
    assert response.headers["x-request-id"]
    row = await stack.decision_row("rest-1")
    assert row["score"] == pytest.approx(decision["score"])
    looked_up = await stack.http.get("/v1/decisions/rest-1")
    assert looked_up.status_code == 200, looked_up.text
    body = looked_up.json()
    assert body["action"] == decision["action"]
    assert body["amount_minor"] == 2599


def problem(response: object) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["detail"]
    return dict(body)


async def test_a_field_the_schema_refuses_is_named(stack: Stack) -> None:
    response = await stack.http.post("/v1/score", json={"transaction": tx_json(2, amount_minor=-5)})
    assert response.status_code == 422
    body = problem(response)
    assert body["field"] == "transaction.amount_minor"
    assert {"field": "transaction.amount_minor"}.items() <= dict(body["errors"][0]).items()  # type: ignore[index]


def in_two_days() -> str:
    """An event time the schema allows and the scorer refuses (at most a day ahead of its clock)."""
    return datetime.fromtimestamp(time.time() + 2 * 86_400, UTC).isoformat()


async def test_a_field_the_scorer_refuses_is_named(stack: Stack) -> None:
    response = await stack.http.post("/v1/score", json={"transaction": tx_json(3, event_time=in_two_days())})
    assert response.status_code == 422
    assert problem(response)["field"] == "transaction.event_time"


async def test_an_unknown_currency_is_named_briefly(stack: Stack) -> None:
    response = await stack.http.post("/v1/score", json={"transaction": tx_json(3, currency="QQQ")})
    assert response.status_code == 422
    body = problem(response)
    assert body["field"] == "transaction.currency"
    assert len(str(body["detail"])) < 200


async def test_a_body_that_is_not_json_is_a_400_and_never_echoed(stack: Stack) -> None:
    pan = "4111111111111111"
    response = await stack.http.post("/v1/score", content=b'{"transaction": {"card": {"pan": "' + pan.encode() + b'"',
                                     headers={"content-type": "application/json"})
    assert response.status_code == 400
    problem(response)
    assert pan not in response.text
    wrong_pan = await stack.http.post("/v1/score", json={"transaction": tx_json(4, card={"pan": pan + "x"})})
    assert wrong_pan.status_code == 422
    assert pan not in wrong_pan.text


async def test_unknown_fields_are_refused(stack: Stack) -> None:
    response = await stack.http.post("/v1/score", json={"transaction": tx_json(5, amount=12)})
    assert response.status_code == 422
    assert problem(response)["field"] == "transaction.amount"


async def test_batch_gives_each_transaction_its_result(stack: Stack) -> None:
    transactions = [tx_json(10), tx_json(11, event_time=in_two_days()), tx_json(12)]
    response = await stack.http.post("/v1/score:batch", json={"transactions": transactions})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["transaction_id"] for r in results] == ["rest-10", "rest-11", "rest-12"]
    assert "decision" in results[0] and "decision" in results[2]
    assert results[1]["error"]["field"] == "transactions[1].event_time"
    assert results[1]["error"]["code"] == 3
    for transaction_id in ("rest-10", "rest-12"):
        await stack.decision_row(transaction_id)


async def test_empty_or_oversized_batches_are_refused(stack: Stack) -> None:
    empty = await stack.http.post("/v1/score:batch", json={"transactions": []})
    assert empty.status_code == 422
    assert problem(empty)["field"] == "transactions"
    too_many = await stack.http.post("/v1/score:batch", json={"transactions": [tx_json(i) for i in range(4097)]})
    assert too_many.status_code == 422


async def test_a_body_over_the_limit_is_413_before_it_is_read(data_dir: Path, embedded_dsn: str) -> None:
    async with running_stack(data_dir, embedded_dsn, max_body_bytes=2048) as small:
        response = await small.http.post("/v1/score:batch", json={"transactions": [tx_json(i) for i in range(20)]})
        assert response.status_code == 413
        assert problem(response)["field"] == "body"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 1024

        streamed = await small.http.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        fits = await small.http.post("/v1/score", json={"transaction": tx_json(21)})
        assert fits.status_code == 200


async def test_outcomes_are_stored_once_and_reach_the_scorer(stack: Stack) -> None:
    scored = await stack.http.post("/v1/score", json={"transaction": tx_json(30)})
    assert scored.status_code == 200
    report = {"transaction_id": "rest-30", "outcome": "fraud", "reported_at": "2026-01-02T03:04:05Z"}
    first = await stack.http.post("/v1/outcomes", json=report)
    assert first.status_code == 201, first.text
    assert first.json()["stored"] is True
    assert first.json()["applied"] is True  # the scorer remembers rest-30's merchant and device
    again = await stack.http.post("/v1/outcomes", json=report)
    assert again.status_code == 200
    assert again.json()["stored"] is False
    async with stack.db.connection() as conn:
        labels = await conn.fetch("SELECT label, source, actor FROM labels WHERE transaction_id = 'rest-30'")
    assert [(r["label"], r["source"]) for r in labels] == [("fraud", "api")]
    await stack.decision_row("rest-30")
    decision = (await stack.http.get("/v1/decisions/rest-30")).json()
    assert [label["outcome"] for label in decision["labels"]] == ["fraud"]


async def test_outcome_validation(stack: Stack) -> None:
    bad_outcome = await stack.http.post("/v1/outcomes", json={"transaction_id": "x", "outcome": "maybe"})
    assert bad_outcome.status_code == 422
    assert problem(bad_outcome)["field"] == "outcome"
    future = await stack.http.post("/v1/outcomes", json={"transaction_id": "x", "outcome": "fraud",
                                                         "reported_at": "2999-01-01T00:00:00Z"})
    assert future.status_code == 422
    assert problem(future)["field"] == "reported_at"
    naive = await stack.http.post("/v1/outcomes", json={"transaction_id": "x", "outcome": "fraud",
                                                        "reported_at": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


async def test_decision_lookup(stack: Stack) -> None:
    missing = await stack.http.get("/v1/decisions/never-scored")
    assert missing.status_code == 404
    problem(missing)
    await stack.http.post("/v1/score", json={"transaction": tx_json(40)})
    await stack.decision_row("rest-40")
    model = (await stack.http.get("/v1/model")).json()
    decision = (await stack.http.get("/v1/decisions/rest-40")).json()
    assert decision["model_version"] == model["model_version"]
    assert list(decision["features"]) == [f["name"] for f in model["features"]]
    assert decision["card"] == {"token": "card-40", "bin": "411111", "last4": "1111"}
    assert "device_id" not in decision and "ip_address" not in decision  # sealed in the database, not served
    too_long = await stack.http.get("/v1/decisions/" + "x" * 129)
    assert too_long.status_code == 422


async def test_model_info(stack: Stack) -> None:
    response = await stack.http.get("/v1/model")
    assert response.status_code == 200
    info = response.json()
    assert info["model_version"] == stack.scorer.scorer.model.bundle.manifest.version
    assert [t["action"] for t in info["thresholds"]] == ["challenge", "review", "block"]
    assert info["features"] and info["loaded_at"]


async def test_health_readiness_and_problem_routes(stack: Stack) -> None:
    assert (await stack.http.get("/healthz")).json()["status"] == "ok"
    ready = await stack.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"scoring": "serving", "database": "ok"}
    nowhere = await stack.http.get("/v1/nowhere")
    assert nowhere.status_code == 404
    problem(nowhere)
    wrong_method = await stack.http.get("/v1/score")
    assert wrong_method.status_code == 405
    problem(wrong_method)


async def test_not_ready_while_the_scorer_is_down(data_dir: Path, embedded_dsn: str) -> None:
    async with running_stack(data_dir, embedded_dsn) as stack:
        await stack.scorer.stop(grace=0.5)
        ready = await stack.http.get("/readyz")
        assert ready.status_code == 503
        assert "scoring" in problem(ready)["detail"]  # type: ignore[operator]
        scored = await stack.http.post("/v1/score", json={"transaction": tx_json(50)})
        assert scored.status_code == 503
        assert scored.headers["retry-after"]
        problem(scored)


async def test_request_ids_are_kept_or_made(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fraudguard.gateway.access")
    given = await stack.http.post("/v1/score", json={"transaction": tx_json(60)}, headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    hostile = await stack.http.get("/healthz", headers={"X-Request-Id": "a b\tc" * 50})
    assert hostile.headers["x-request-id"] != "a b\tc" * 50
    assert len(hostile.headers["x-request-id"]) == 32
    access = [r for r in caplog.records if r.name == "fraudguard.gateway.access"]
    assert any(getattr(r, "request_id", None) == "abc-123" and getattr(r, "route", None) == "/v1/score"
               for r in access)


async def test_metrics(stack: Stack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for i in range(3):
        assert (await stack.http.post("/v1/score", json={"transaction": tx_json(70 + i)})).status_code == 200
    refused = await stack.http.post("/v1/score", json={"transaction": tx_json(80, event_time=in_two_days())})
    assert refused.status_code == 422
    text = (await stack.http.get("/metrics")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("fraudguard_gateway_requests_total",
                    (("method", "POST"), ("route", "/v1/score"), ("status", "200")))] == 3
    assert samples[("fraudguard_gateway_requests_total",
                    (("method", "POST"), ("route", "/v1/score"), ("status", "422")))] == 1
    decided = sum(v for (name, _), v in samples.items() if name == "fraudguard_gateway_decisions_total")
    assert decided == 3
    assert samples[("fraudguard_gateway_score_count", ())] == 3
    assert samples[("fraudguard_gateway_upstream_errors_total", (("code", "INVALID_ARGUMENT"),))] == 1
    assert samples[("fraudguard_gateway_request_seconds_count", (("route", "/v1/score"),))] == 4


async def test_the_readme_curl_example_gets_a_decision(stack: Stack) -> None:
    import json
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## REST gateway"):]
    body = re.search(r"/v1/score -H 'content-type: application/json' -d '(.*?)'", section, flags=re.S)
    assert body is not None, "the README's gateway section has no curl example"
    response = await stack.http.post("/v1/score", content=body.group(1).encode(),
                                     headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["decision"]["transaction_id"] == json.loads(body.group(1))["transaction"]["transaction_id"]


async def test_the_request_id_reaches_the_scorers_log(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fraudguard.scoring")
    await stack.http.post("/v1/score", json={"transaction": tx_json(90)})
    response = await stack.http.post("/v1/outcomes", json={"transaction_id": "rest-90", "outcome": "legitimate"},
                                     headers={"X-Request-Id": "trace-90"})
    assert response.status_code == 201
    reported = [r for r in caplog.records if r.getMessage() == "outcome reported"]
    assert [getattr(r, "request_id", None) for r in reported] == ["trace-90"]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00.0+00:03", "9999-12-31T23:59:59-05:00", "1999-12-31T23:59:59Z"])
async def test_times_out_of_range_are_422_not_500(stack: Stack, when: str) -> None:
    scored = await stack.http.post("/v1/score", json={"transaction": tx_json(95, event_time=when)})
    assert scored.status_code == 422
    assert problem(scored)["field"] == "transaction.event_time"
    outcome = await stack.http.post("/v1/outcomes", json={"transaction_id": "x", "outcome": "fraud",
                                                          "reported_at": when})
    assert outcome.status_code == 422
    assert problem(outcome)["field"] == "reported_at"


async def test_rule_hits_come_back_over_rest(data_dir: Path, embedded_dsn: str) -> None:
    (data_dir / "rules").mkdir()
    (data_dir / "rules" / "active.rules").write_text('rule huge "more than 1,000": block if amount > 1_000\n')
    async with running_stack(data_dir, embedded_dsn) as stack:
        response = await stack.http.post("/v1/score", json={"transaction": tx_json(96, amount_minor=250_000)})
        assert response.status_code == 200, response.text
        decision = response.json()["decision"]
        assert decision["action"] == "block"
        assert decision["rule_hits"] == [{"rule_id": "huge", "action": "block", "description": "more than 1,000"}]
        assert decision["rule_set_version"]
        small = (await stack.http.post("/v1/score", json={"transaction": tx_json(97)})).json()["decision"]
        assert small["rule_hits"] == []
        await stack.decision_row("rest-96")
        stored = (await stack.http.get("/v1/decisions/rest-96")).json()
        assert stored["rule_hits"] == [{"rule_id": "huge", "action": "block"}]
        assert stored["rule_versions"] == {"rule_set": decision["rule_set_version"]}
