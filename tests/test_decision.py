"""Risk bands: parsing, validation, and score -> action at and around every threshold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudguard.settings import SettingsError
from scoring.decision import ALLOW, BLOCK, CHALLENGE, REVIEW, decide, parse_bands, thresholds_array
from scoring.model import Thresholds


def test_parse_and_validate() -> None:
    assert parse_bands("challenge=0.3, review=0.6,block=0.9") == Thresholds(0.3, 0.6, 0.9)
    for text in ("challenge=0.3", "challenge=a,review=0.6,block=0.9", "x=1,review=0.6,block=0.9",
                 "challenge=0.7,review=0.6,block=0.9", "challenge=0,review=0.6,block=0.9"):
        with pytest.raises(SettingsError, match="bands"):
            parse_bands(text)


def test_actions_at_thresholds() -> None:
    t = thresholds_array(Thresholds(0.3, 0.6, 0.9))
    scores = np.array([0.0, 0.2999, 0.3, 0.5999, 0.6, 0.8999, 0.9, 1.0])
    expected = [ALLOW, ALLOW, CHALLENGE, CHALLENGE, REVIEW, REVIEW, BLOCK, BLOCK]
    assert decide(scores, t).tolist() == expected
    assert [int(decide(scores[i : i + 1], t)[0]) for i in range(len(scores))] == expected


def test_a_score_that_is_not_a_number_is_held_for_review() -> None:
    t = thresholds_array(Thresholds(0.3, 0.6, 0.9))
    assert decide(np.array([np.nan]), t).tolist() == [REVIEW]
    assert decide(np.array([np.nan, 0.1, 0.95, np.nan]), t).tolist() == [REVIEW, ALLOW, BLOCK, REVIEW]


@given(st.lists(st.floats(0, 1) | st.just(float("nan")), min_size=1, max_size=50), st.floats(0.01, 1),
       st.floats(0.01, 1), st.floats(0.01, 1))
def test_single_and_batch_paths_agree(scores: list[float], a: float, b: float, c: float) -> None:
    t = np.array(sorted([a, b, c]))
    batch = decide(np.array(scores), t).tolist()
    singles = [int(decide(np.array([s]), t)[0]) for s in scores]
    assert batch == singles
