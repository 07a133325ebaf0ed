"""schemathesis against the gateway's own OpenAPI document: generated requests (valid and invalid) to every route of
a real ``fraudguard gateway`` process in front of a real ``fraudguard serve`` process. No answer may be a 5xx, and
every answer must match the document (status, content type, headers, body schema)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation import GenerationMode

from tests._server_process import ServerProcess
from tests.gateway_stack import WEBHOOK_SECRET


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, bundle_store: Path) -> Iterator[str]:
    data = tmp_path_factory.mktemp("schemathesis")
    shutil.copytree(bundle_store, data / "models")
    scorer = ServerProcess(data, ("--max-cards", "4096", "--max-entities", "4096"),
                           env={"FRAUDGUARD_RECORD": "true"}).start()
    gateway = None
    try:
        gateway = ServerProcess(data, ("--scoring-target", scorer.target, "--rate-limit-per-s", "0"),
                                env={"FRAUDGUARD_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}, command="gateway").start()
        url = f"http://{gateway.target}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.1)
        yield url
    finally:
        if gateway is not None:
            assert gateway.terminate() == 0
            assert not [line for line in gateway.logs() if line.get("level") == "ERROR"], gateway.log_lines
        assert scorer.terminate() == 0


@pytest.fixture(scope="module")
def api_schema(gateway_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")


OPERATIONS = [
    "POST /v1/score", "POST /v1/score:batch", "POST /v1/outcomes", "GET /v1/decisions/{transaction_id}",
    "GET /v1/model", "POST /v1/webhooks/stripe", "GET /healthz", "GET /readyz", "GET /metrics",
]


def test_every_route_is_covered(api_schema: schemathesis.BaseSchema) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}  # type: ignore[union-attr]
    assert labels == set(OPERATIONS)


# the operations with an input to get wrong (the others take nothing a request could break)
WITH_INPUT = OPERATIONS[:4]
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + \
        [(label, GenerationMode.NEGATIVE) for label in WITH_INPUT]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_api_conforms(api_schema: schemathesis.BaseSchema, label: str, mode: GenerationMode) -> None:
    """Valid requests (positive) and requests the document forbids (negative, which must get a 4xx).

    Runs schemathesis' strategies through hypothesis directly (its pytest plugin does not run on pytest 9).

    Every check but ``positive_data_acceptance``: a request the document allows may still be refused (422,
    naming the field) for what only the scorer can judge and JSON Schema cannot say: a PAN must pass the Luhn
    check, an event time may lie at most a day ahead of the scorer's clock, a card needs a token or a PAN."""
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
        case.call_and_validate(timeout=30, excluded_checks=[positive_data_acceptance])

    conforms()
