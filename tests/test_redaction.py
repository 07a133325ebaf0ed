"""The log redaction filter: card numbers, CVVs and e-mails never reach a log line."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudguard.logs import configure_logging
from fraudguard.redaction import luhn_valid, redact

VISA = "4111111111111111"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"pan={VISA}", "pan=[PAN]"),
        ("card 4111 1111 1111 1111 declined", "card [PAN] declined"),
        ("card 4111-1111-1111-1111", "card [PAN]"),
        ("order 4111111111111112 shipped", "order 4111111111111112 shipped"),  # fails Luhn: kept
        ("ts 1700000000123", "ts 1700000000123"),  # 13 digits, not Luhn-valid
        ("cvv=123 and CVC: 9876", "cvv=[CVV] and CVC: [CVV]"),
        ("mail ann.lee+x@example.co.uk now", "mail [EMAIL] now"),
        # a card number as an e-mail's local part: the number goes first (as a whole), then the address
        (f"mail {VISA}@example.com", "mail [EMAIL]"),
        ("to=4111 1111 1111 1111@example.com,", "to=[EMAIL],"),
        (f"x{VISA}.y@example.com", "[EMAIL]"),
        ("4111.1111.1111.1111@example.com", "[EMAIL]"),
        (f"{VISA}@localhost", "[PAN]@localhost"),  # no domain, so no e-mail: the number goes all the same
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_luhn() -> None:
    assert luhn_valid(VISA)
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@given(st.text(max_size=200))
def test_redact_never_raises_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_json_logs_are_redacted_everywhere() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    try:
        log = logging.getLogger("fraudguard.test.some.library")
        log.info("charge %s for %s", VISA, "bob@example.com", extra={"detail": f"cvv: 123 pan {VISA}"})
        try:
            raise ValueError(f"bad card {VISA}")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "charge [PAN] for [EMAIL]"
    assert lines[0]["detail"] == "cvv: [CVV] pan [PAN]"
    assert lines[0]["logger"] == "fraudguard.test.some.library"
    assert VISA not in stream.getvalue()
    assert "ValueError" in lines[1]["exception"]
