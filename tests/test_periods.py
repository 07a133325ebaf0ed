"""Time periods: train, gap, test from flags or from the data; clear errors naming the flag."""

from __future__ import annotations

import numpy as np
import pytest

from fraudguard.errors import ValidationError
from fraudguard.timeparse import parse_duration, parse_instant
from trainer.periods import DAY_S, TrainingPeriods

T0 = 1_704_067_200.0  # 2024-01-01
# one payment an hour for 30 days, two in the same second at every noon
HOURS = np.arange(0, 30 * 24, dtype=np.float64) * 3600 + T0
TIMES = np.sort(np.concatenate([HOURS, HOURS[12::24]]))


def test_defaults_skip_the_warm_up_and_hold_out_the_last_share() -> None:
    split = TrainingPeriods().split(TIMES)
    t = TIMES
    assert t[split.train.start] >= T0 + 3 * DAY_S > t[split.train.start - 1]
    assert split.train.stop == split.valid.start and split.valid.stop == split.test.start
    assert split.test.stop == len(t)
    used = len(t) - split.train.start
    assert split.test.stop - split.test.start == pytest.approx(0.15 * used, abs=2)
    trained = split.valid.stop - split.train.start
    assert split.valid.stop - split.valid.start == pytest.approx(0.2 * trained, abs=2)


def test_explicit_periods_and_gap() -> None:
    periods = TrainingPeriods(train_from=T0 + 5 * DAY_S, train_to=T0 + 20 * DAY_S, gap_s=2 * DAY_S,
                              test_to=T0 + 27 * DAY_S)  # fmt: skip
    split = periods.split(TIMES)
    t = TIMES
    assert t[split.train.start] == T0 + 5 * DAY_S
    assert t[split.valid.stop - 1] < T0 + 20 * DAY_S <= t[split.valid.stop]
    assert t[split.test.start] == T0 + 22 * DAY_S  # train_to + gap
    assert t[split.test.stop - 1] < T0 + 27 * DAY_S <= t[split.test.stop]
    assert split.bounds == (T0 + 5 * DAY_S, T0 + 20 * DAY_S, T0 + 22 * DAY_S, T0 + 27 * DAY_S)


def test_test_from_alone_ends_training_a_gap_before_it() -> None:
    split = TrainingPeriods(test_from=T0 + 25 * DAY_S, gap_s=DAY_S).split(TIMES)
    assert split.bounds[1] == T0 + 24 * DAY_S and TIMES[split.test.start] == T0 + 25 * DAY_S


def test_payments_of_one_second_stay_on_one_side_of_every_boundary() -> None:
    for fraction in np.linspace(0.05, 0.6, 23):
        split = TrainingPeriods(validation_fraction=float(fraction), test_fraction=float(fraction)).split(TIMES)
        for boundary in (split.valid.start, split.test.start):
            assert TIMES[boundary - 1] < TIMES[boundary]


@pytest.mark.parametrize(("periods", "flag"), [
    (TrainingPeriods(train_from=T0 + 10 * DAY_S, train_to=T0 + 5 * DAY_S), "--train-to"),
    (TrainingPeriods(train_to=T0 + 10 * DAY_S, test_from=T0 + 11 * DAY_S, gap_s=3 * DAY_S), "--test-from"),
    (TrainingPeriods(test_from=T0 + 40 * DAY_S), "--test-from"),
    (TrainingPeriods(train_from=T0 + 10 * DAY_S, train_to=T0 + 10 * DAY_S + 1), "--train-from"),
    (TrainingPeriods(test_from=T0 + 20 * DAY_S, test_to=T0 + 19 * DAY_S), "--test-to"),
])  # fmt: skip
def test_impossible_periods_name_the_flag(periods: TrainingPeriods, flag: str) -> None:
    with pytest.raises(ValidationError) as caught:
        periods.split(TIMES)
    assert caught.value.field == flag


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"gap_s": -1.0}, "--gap"), ({"validation_fraction": 1.0}, "--validation-fraction"),
    ({"test_fraction": 0.0}, "--test-fraction"), ({"train_from": float("nan")}, "--train-from"),
    ({"warmup_s": float("inf")}, "--warmup"),
])  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict[str, float], flag: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingPeriods(**kwargs)
    assert caught.value.field == flag


def test_unsorted_or_empty_data_is_refused() -> None:
    with pytest.raises(ValidationError, match="sorted"):
        TrainingPeriods().split(TIMES[::-1])
    with pytest.raises(ValidationError, match="no payments"):
        TrainingPeriods().split(np.array([], np.float64))


def test_times_and_durations_as_typed() -> None:
    assert parse_instant("2024-01-01", "--x") == T0
    assert parse_instant("2024-01-01T06:00:00Z", "--x") == T0 + 6 * 3600
    assert parse_instant("2024-01-01T07:00:00+01:00", "--x") == T0 + 6 * 3600
    assert parse_instant(str(int(T0)), "--x") == T0
    assert [parse_duration(d, "--d") for d in ("90", "90s", "15m", "6h", "7d", "2w", "1.5d")] == [
        90, 90, 900, 21_600, 604_800, 1_209_600, 129_600]
    for bad in ("", "soon", "7 days", "-1d", "1e400d"):
        with pytest.raises(ValidationError) as caught:
            parse_duration(bad, "--gap")
        assert caught.value.field == "--gap"
    for bad in ("", "yesterday", "2024-13-01", "1.5"):
        with pytest.raises(ValidationError) as caught:
            parse_instant(bad, "--test-from")
        assert caught.value.field == "--test-from"
