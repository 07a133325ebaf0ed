"""The evaluation of a period (metrics against hand-computed values, edge cases) and its report."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from matplotlib import _pylab_helpers
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudguard.errors import ValidationError
from scoring.model import Thresholds
from trainer.evaluation import (
    AMOUNT_BANDS,
    AMOUNT_SEGMENT,
    MAX_CURVE_POINTS,
    Evaluation,
    EvaluationInput,
    amount_band_codes,
    evaluate,
)
from trainer.report import (
    CARD_PRECISION_FILE,
    IMPORTANCE_FILE,
    PR_FILE,
    RELIABILITY_FILE,
    SCORES_FILE,
    ReportFiles,
    write_report,
)

DAY = 86_400
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
THRESHOLDS = Thresholds(challenge=0.3, review=0.5, block=0.8)
HOSTILE = "<script>alert(1)</script>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_input(score: Sequence[float], fraud: Sequence[bool], *, times: Sequence[int] | None = None,
               cards: Sequence[str] | None = None, amount: Sequence[float] | None = None,
               currency: Sequence[str] | None = None, scenario: Sequence[str] | None = None,
               segments: Mapping[str, Sequence[str]] | None = None, labelled: bool = True,
               thresholds: Thresholds = THRESHOLDS) -> EvaluationInput:  # fmt: skip
    """A small input; columns not given get neutral values (one card per payment, 50 EUR, one day)."""
    n = len(score)
    return EvaluationInput(
        transaction_id=np.array([f"t{i}" for i in range(n)], dtype=str),
        event_time=np.array(times if times is not None else [T0 + i for i in range(n)], np.int64),
        score=np.array(score, np.float64),
        is_fraud=np.array(fraud, np.bool_),
        card=np.array(cards if cards is not None else [f"c{i}" for i in range(n)], dtype=str),
        amount=np.array(amount if amount is not None else [50.0] * n, np.float64),
        currency=np.array(currency if currency is not None else ["EUR"] * n, dtype=str),
        scenario=np.array(scenario if scenario is not None else [""] * n, dtype=str),
        segments={k: np.array(v, dtype=str) for k, v in (segments or {}).items()},
        thresholds=thresholds,
        labelled=labelled,
    )


def random_input(n: int, seed: int = 1, fraud_rate: float = 0.05, labelled: bool = True) -> EvaluationInput:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < fraud_rate
    score = np.clip(rng.beta(1, 12, n) + y * rng.beta(1.5, 2.0, n), 0.0, 1.0)
    return make_input(
        score.tolist(), y.tolist(), times=np.sort(rng.integers(T0, T0 + 5 * DAY, n)).tolist(),
        cards=[f"card{c}" for c in rng.integers(0, n // 4, n)], amount=rng.lognormal(3.5, 1.5, n).tolist(),
        currency=rng.choice(["EUR", "USD"], n).tolist(),
        scenario=np.where(y, rng.choice(["card_testing", HOSTILE], n), "").tolist(),
        segments={"country": rng.choice(["FR", "DE", HOSTILE], n).tolist(), "channel": rng.choice(["web", "pos"], n)
                  .tolist()}, labelled=labelled)  # fmt: skip


# ------------------------------------------------------------------------------------------------ ranking


def test_auc_and_average_precision_match_hand_values_and_sklearn() -> None:
    score, fraud = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [True, False, True, False, False, True]
    ev = evaluate(make_input(score, fraud))
    # AUC: of the 9 (fraud, legitimate) pairs, the fraud scores higher in 3 + 2 + 0
    assert ev.auc_roc == pytest.approx(5 / 9)
    # AP: precision at each fraud's rank (1, 3, 6), averaged
    assert ev.average_precision == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    assert ev.auc_roc == pytest.approx(roc_auc_score(fraud, score))
    assert ev.average_precision == pytest.approx(average_precision_score(fraud, score))
    assert ev.n == 6 and ev.n_fraud == 3 and ev.fraud_rate == pytest.approx(0.5) and ev.undefined == {}


def test_ranking_with_ties_matches_sklearn() -> None:
    data = random_input(3_000, seed=4)
    rounded = np.round(data.score, 2)  # many ties
    ev = evaluate(make_input(rounded.tolist(), data.is_fraud.tolist()))
    assert ev.auc_roc == pytest.approx(roc_auc_score(data.is_fraud, rounded), abs=1e-12)
    assert ev.average_precision == pytest.approx(average_precision_score(data.is_fraud, rounded), abs=1e-12)


def test_precision_recall_curve_is_thinned_but_keeps_its_ends() -> None:
    ev = evaluate(random_input(5_000, seed=2))
    curve = ev.precision_recall
    assert curve is not None
    assert 100 < len(curve.recall) <= MAX_CURVE_POINTS and len(curve.recall) == len(curve.precision)
    assert curve.recall[0] == 1.0 and curve.recall[-1] == 0.0
    assert all(a >= b for a, b in zip(curve.recall, curve.recall[1:], strict=False))


# ------------------------------------------------------------------------------------------ action bands

BAND_SCORES = [0.95, 0.85, 0.7, 0.6, 0.55, 0.4, 0.35, 0.2, 0.1, 0.05]
BAND_FRAUD = [True, False, True, False, False, True, False, True, False, False]


def test_band_precision_recall_and_f1_by_hand() -> None:
    ev = evaluate(make_input(BAND_SCORES, BAND_FRAUD))
    by_name = {b.band: b for b in ev.bands}
    # (count, precision, recall, F1 = 2TP / (2TP + FP + FN)) with 4 fraud payments
    expected = {"challenge": (7, 3 / 7, 3 / 4, 6 / 11), "review": (5, 2 / 5, 2 / 4, 4 / 9),
                "block": (2, 1 / 2, 1 / 4, 2 / 6)}  # fmt: skip
    for name, (count, precision, recall, f1) in expected.items():
        band = by_name[name]
        assert band.count == count and band.rate == pytest.approx(count / 10)
        assert band.precision == pytest.approx(precision)
        assert band.recall == pytest.approx(recall)
        assert band.f1 == pytest.approx(f1)
        assert band.threshold == getattr(THRESHOLDS, name)
    mix = ev.action_mix
    assert (mix.allow, mix.challenge, mix.review, mix.block) == (3, 2, 3, 2)


def test_a_score_equal_to_a_threshold_gets_that_band() -> None:
    ev = evaluate(make_input([0.3, 0.5, 0.8, 0.29999], [False, False, False, False]))
    mix = ev.action_mix
    assert (mix.allow, mix.challenge, mix.review, mix.block) == (1, 1, 1, 1)


# --------------------------------------------------------------------------------------- card precision

# day 1: A .9 fraud, B .8 and .2 legit, C .7 fraud, D .1 legit
# day 2: A .95 fraud, C .6 fraud, D .5 legit and .05 fraud (a fraud card that day), E .4 fraud
# day 3: A .99 legit, D .8 legit, B .5 legit, E .3 fraud
CARD_ROWS = [
    (0, "A", 0.9, True), (0, "B", 0.8, False), (0, "B", 0.2, False), (0, "C", 0.7, True), (0, "D", 0.1, False),
    (1, "A", 0.95, True), (1, "C", 0.6, True), (1, "D", 0.5, False), (1, "D", 0.05, True), (1, "E", 0.4, True),
    (2, "A", 0.99, False), (2, "D", 0.8, False), (2, "B", 0.5, False), (2, "E", 0.3, True),
]


def card_input(rows: Sequence[tuple[int, str, float, bool]] = CARD_ROWS) -> EvaluationInput:
    return make_input([r[2] for r in rows], [r[3] for r in rows], times=[T0 + r[0] * DAY + 60 * i
                      for i, r in enumerate(rows)], cards=[r[1] for r in rows])  # fmt: skip


def test_card_precision_at_k_leaves_out_cards_caught_on_earlier_days() -> None:
    cp = evaluate(card_input(), k=2).card_precision
    assert cp is not None and cp.k == 2
    # day 1: top 2 = A (fraud), B → 1/2; A caught
    # day 2: A left out; C .6, D .5 (fraud that day), E .4 → top C, D → 2/2; C and D caught
    # day 3: A and D left out; B .5, E .3 (fraud) → 1/2 (without the rule: A, D → 0/2)
    assert [d.day for d in cp.days] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert [d.precision for d in cp.days] == [0.5, 1.0, 0.5]
    assert [d.cards for d in cp.days] == [4, 3, 2]
    assert [d.fraud_cards for d in cp.days] == [1, 2, 1]
    assert cp.mean == pytest.approx(2 / 3)


def test_card_precision_with_fewer_cards_than_k_divides_by_the_cards_ranked() -> None:
    cp = evaluate(card_input(), k=100).card_precision
    assert cp is not None
    # day 1: all 4 ranked, A and C fraud (caught); day 2: D, E fresh, both fraud; day 3: only B is fresh
    assert [(d.ranked, d.fraud_cards) for d in cp.days] == [(4, 2), (2, 2), (1, 0)]
    assert [d.precision for d in cp.days] == [0.5, 1.0, 0.0]


def test_card_precision_of_a_day_whose_cards_were_all_caught_before_is_none() -> None:
    rows = [(0, "A", 0.9, True), (0, "B", 0.1, False), (1, "A", 0.8, True)]
    cp = evaluate(card_input(rows), k=1).card_precision
    assert cp is not None
    assert [(d.cards, d.ranked, d.precision) for d in cp.days] == [(2, 1, 1.0), (0, 0, None)]
    assert cp.mean == 1.0


def test_a_single_day() -> None:
    ev = evaluate(card_input(CARD_ROWS[:5]), k=1)
    assert ev.days == 1 and ev.card_precision is not None
    assert [d.precision for d in ev.card_precision.days] == [1.0] and ev.card_precision.mean == 1.0
    assert ev.period_start == "2024-01-01T00:00:00Z" and ev.period_end == "2024-01-01T00:04:00Z"


# ----------------------------------------------------------------------------------- money and scenarios


def test_fraud_amount_caught_per_currency_and_in_mixed_units() -> None:
    # review-or-block counts as caught; a challenged fraud and a blocked legitimate payment do not count
    ev = evaluate(make_input([0.9, 0.2, 0.6, 0.35, 0.9], [True, True, True, True, False],
                             amount=[100.0, 50.0, 200.0, 30.0, 1000.0], currency=["EUR", "EUR", "USD", "USD", "JPY"]))
    amount = ev.fraud_amount
    assert amount is not None and amount.mixed_currencies and "mixed" in amount.note
    per = {a.currency: (a.fraud_amount, a.caught_amount, a.share) for a in amount.per_currency}
    assert per == {"EUR": (150.0, 100.0, 100 / 150), "USD": (230.0, 200.0, 200 / 230)}
    assert (amount.total.currency, amount.total.fraud_amount, amount.total.caught_amount) == ("", 380.0, 300.0)
    assert amount.total.share == pytest.approx(300 / 380)


def test_fraud_amount_caught_in_one_currency_is_not_mixed() -> None:
    amount = evaluate(make_input([0.9, 0.1], [True, True], amount=[10.0, 30.0])).fraud_amount
    assert amount is not None and not amount.mixed_currencies and amount.note == ""
    assert (amount.total.currency, amount.total.share) == ("EUR", 0.25)


def test_recall_per_scenario() -> None:
    ev = evaluate(make_input([0.9, 0.6, 0.1, 0.95, 0.9, 0.7], [True, True, True, True, False, True],
                             scenario=["card_testing", "card_testing", "card_testing", "ato", "", ""]))  # fmt: skip
    got = {s.scenario: (s.frauds, s.review_or_block, s.block, s.recall_review_or_block, s.recall_block)
           for s in ev.scenarios}  # fmt: skip
    assert got == {"card_testing": (3, 2, 1, pytest.approx(2 / 3), pytest.approx(1 / 3)), "ato": (1, 1, 1, 1.0, 1.0)}


def test_no_scenario_labels_give_no_scenario_rows() -> None:
    assert evaluate(make_input(BAND_SCORES, BAND_FRAUD)).scenarios == ()


# ------------------------------------------------------------------------------------------------ fairness


def test_false_positive_rate_by_segment_and_disparity_ratio() -> None:
    # FR: 4 legitimate, one at review (0.6) → 1/4; a challenged one (0.4) is not a false positive;
    # DE: 2 legitimate, one blocked → 1/2; US: 1 legitimate, below min_segment_legit; fraud rows are left out
    country = ["FR", "FR", "FR", "FR", "DE", "DE", "US", "FR", "DE"]
    score = [0.6, 0.4, 0.1, 0.1, 0.9, 0.1, 0.9, 0.9, 0.9]
    fraud = [False] * 7 + [True, True]
    ev = evaluate(make_input(score, fraud, segments={"country": country}), min_segment_legit=2)
    seg = {s.kind: s for s in ev.fairness}["country"]
    assert [(r.value, r.legit, r.flagged, r.fpr) for r in seg.values] == [("DE", 2, 1, 0.5), ("FR", 4, 1, 0.25)]
    assert seg.excluded_values == 1 and seg.min_legit == 2
    assert (seg.min_fpr, seg.max_fpr, seg.disparity_ratio, seg.note) == (0.25, 0.5, 2.0, "")


def test_a_zero_false_positive_rate_gives_no_ratio_and_says_why() -> None:
    ev = evaluate(make_input([0.9, 0.1, 0.1, 0.1], [False] * 4, segments={"channel": ["web", "web", "pos", "pos"]}),
                  min_segment_legit=2)  # fmt: skip
    seg = {s.kind: s for s in ev.fairness}["channel"]
    assert (seg.min_fpr, seg.max_fpr, seg.disparity_ratio) == (0.0, 0.5, None)
    assert "0" in seg.note and "pos" in seg.note
    nothing = {s.kind: s for s in evaluate(make_input([0.1] * 4, [False] * 4, segments={"channel": ["a"] * 4}),
                                               min_segment_legit=2).fairness}["channel"]  # fmt: skip
    assert nothing.disparity_ratio is None and "one value" in nothing.note


def test_amount_bands_are_derived_from_the_amount() -> None:
    amounts = [5.0, 10.0, 99.99, 100.0, 999.0, 1000.0, 9999.0, 10000.0, 1e7]
    assert amount_band_codes(np.array(amounts)).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    ev = evaluate(make_input([0.1] * 9, [False] * 9, amount=amounts), min_segment_legit=1)
    seg = {s.kind: s for s in ev.fairness}[AMOUNT_SEGMENT]
    assert [(r.value, r.legit) for r in seg.values] == list(zip(AMOUNT_BANDS, [1, 2, 2, 2, 2], strict=True))


# ----------------------------------------------------------------------------------------------- edges


def test_no_fraud_in_the_period_leaves_ranking_metrics_undefined_with_a_reason() -> None:
    ev = evaluate(make_input([0.9, 0.6, 0.1], [False] * 3))
    assert ev.auc_roc is None and ev.average_precision is None and ev.precision_recall is None
    assert "no fraud" in ev.undefined["auc_roc"] and "no fraud" in ev.undefined["average_precision"]
    block = {b.band: b for b in ev.bands}["block"]
    assert (block.precision, block.recall, block.f1) == (0.0, None, 0.0)
    assert ev.fraud_amount is not None and ev.fraud_amount.total.share is None and "no fraud" in ev.fraud_amount.note
    assert ev.n_fraud == 0 and ev.card_precision is not None and ev.card_precision.mean == 0.0
    json.dumps(ev.to_dict(), allow_nan=False)


def test_no_fraud_and_nothing_flagged_leaves_precision_and_f1_undefined() -> None:
    band = evaluate(make_input([0.1, 0.2], [False, False])).bands[0]
    assert (band.count, band.precision, band.recall, band.f1) == (0, None, None, None)


def test_all_fraud() -> None:
    ev = evaluate(make_input([0.9, 0.6, 0.1], [True] * 3), min_segment_legit=1)
    assert ev.auc_roc is None and "no legitimate" in ev.undefined["auc_roc"]
    assert ev.average_precision == pytest.approx(1.0) and ev.fraud_rate == 1.0
    assert all(s.values == () and s.disparity_ratio is None and s.note for s in ev.fairness)
    json.dumps(ev.to_dict(), allow_nan=False)


def test_unlabelled_input_reports_counts_and_scores_only() -> None:
    ev = evaluate(make_input(BAND_SCORES, BAND_FRAUD, scenario=["x"] * 10, labelled=False))
    assert not ev.labelled and ev.n == 10
    assert (ev.n_fraud, ev.fraud_rate, ev.auc_roc, ev.average_precision) == (None, None, None, None)
    assert (ev.card_precision, ev.fraud_amount, ev.precision_recall) == (None, None, None)
    assert (ev.scenarios, ev.fairness, ev.reliability) == ((), (), ())
    assert all(b.precision is None and b.recall is None and b.f1 is None for b in ev.bands)
    assert [b.count for b in ev.bands] == [7, 5, 2]
    assert dict(ev.score_histogram.counts).keys() == {"all"} and sum(ev.score_histogram.counts["all"]) == 10
    assert "labels" in ev.undefined["auc_roc"]


def test_reliability_bins_and_score_histogram() -> None:
    ev = evaluate(make_input([0.05, 0.15, 0.95, 1.0], [False, True, True, False]), histogram_bins=4)
    bins = {round(b.lower, 1): b for b in ev.reliability if b.count}
    assert bins.keys() == {0.0, 0.1, 0.9} and len(ev.reliability) == 10
    assert (bins[0.9].count, bins[0.9].mean_score, bins[0.9].fraud_rate) == (2, (0.95 + 1.0) / 2, 0.5)
    assert (bins[0.1].count, bins[0.1].fraud_rate) == (1, 1.0)
    assert ev.score_histogram.counts["legitimate"] == (1, 0, 0, 1)
    assert ev.score_histogram.counts["fraud"] == (1, 0, 0, 1)


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.1])
def test_bad_scores_are_refused_naming_score(bad: float) -> None:
    with pytest.raises(ValidationError) as caught:
        make_input([0.1, bad], [False, True])
    assert caught.value.field == "score" and "row 1" in caught.value.message


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValidationError, match="no payments"):
        make_input([], [])


@pytest.mark.parametrize(("column", "value", "field"), [
    ("card", np.array(["a"]), "card"),
    ("amount", np.array([1.0, -2.0]), "amount"),
    ("is_fraud", np.array([0.0, 1.0]), "is_fraud"),
    ("segments", {"country": np.array(["FR"])}, "segments.country"),
    ("segments", {AMOUNT_SEGMENT: np.array(["x", "y"])}, "segments"),
    ("thresholds", (0.1, 0.2, 0.3), "thresholds"),
])  # fmt: skip
def test_bad_columns_are_refused_naming_the_field(column: str, value: object, field: str) -> None:
    good = make_input([0.1, 0.2], [False, True])
    columns = {f.name: getattr(good, f.name) for f in dataclasses.fields(EvaluationInput)}
    with pytest.raises(ValidationError) as caught:
        EvaluationInput(**{**columns, column: value})
    assert caught.value.field == field


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        evaluate(make_input([0.1], [False]), k=0)
    assert caught.value.field == "k"


def test_to_dict_is_plain_json() -> None:
    ev = evaluate(random_input(2_000))
    text = json.dumps(ev.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["auc_roc"] == ev.auc_roc and back["bands"][2]["band"] == "block"
    assert back["thresholds"] == {"challenge": 0.3, "review": 0.5, "block": 0.8}


# ------------------------------------------------------------------------------------------------- report

ALL_FIGURES = (PR_FILE, SCORES_FILE, IMPORTANCE_FILE, RELIABILITY_FILE, CARD_PRECISION_FILE)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; fails unless the file starts like a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Evaluation, ReportFiles]:
    data = random_input(20_000)
    ev = evaluate(data)
    importance = {f"feature_{i}": float(30 - i) for i in range(30)}
    out = tmp_path_factory.mktemp("report")
    return ev, write_report(ev, data, out, importance, f"Test period {HOSTILE}")


def test_report_writes_every_file(report: tuple[Evaluation, ReportFiles]) -> None:
    _, files = report
    assert set(files.figures) == set(ALL_FIGURES) and dict(files.skipped) == {}
    for name in ALL_FIGURES:
        width, height = png_size(files.directory / name)
        assert 400 <= width <= 2500 and 300 <= height <= 2500, (name, width, height)
    for path in (files.markdown, files.html, files.metrics):
        assert path.is_file() and path.stat().st_size > 500


def test_report_metrics_json_matches_the_evaluation(report: tuple[Evaluation, ReportFiles]) -> None:
    ev, files = report
    assert json.loads(files.metrics.read_text(encoding="utf-8")) == ev.to_dict()


def test_report_escapes_user_data(report: tuple[Evaluation, ReportFiles]) -> None:
    _, files = report
    page = files.html.read_text(encoding="utf-8")
    markdown = files.markdown.read_text(encoding="utf-8")
    assert HOSTILE not in page and "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # title, heading, scenario, segment value
    assert HOSTILE not in markdown and r"\<script\>alert(1)\</script\>" in markdown


def test_report_escapes_user_data_in_notes(tmp_path: Path) -> None:
    # the hostile value reaches paragraphs: the zero-FPR note names it, the mixed-currency note lists currencies
    country = ["FR", "FR", HOSTILE, HOSTILE, "FR", "FR"]
    data = make_input([0.9, 0.1, 0.1, 0.1, 0.9, 0.9], [False, False, False, False, True, True],
                      currency=["EUR", "EUR", "EUR", "EUR", HOSTILE, "EUR"], segments={"country": country})
    ev = evaluate(data, min_segment_legit=1)
    files = write_report(ev, data, tmp_path, None, "notes")
    page = files.html.read_text(encoding="utf-8")
    # segment and currency cells, the zero-FPR note, the mixed-currency note in the headline and under its table
    assert "<script" not in page and page.count("&lt;script&gt;") == 5
    assert HOSTILE not in files.markdown.read_text(encoding="utf-8")


def test_report_shows_the_tables_and_links_the_images(report: tuple[Evaluation, ReportFiles]) -> None:
    ev, files = report
    page, markdown = files.html.read_text(encoding="utf-8"), files.markdown.read_text(encoding="utf-8")
    for name in ALL_FIGURES:
        assert f'<img src="{name}"' in page and f"]({name})" in markdown
    for text in ("AUC-ROC", "Card precision@100", "Recall per fraud scenario", "Disparity ratio", "card\\_testing"):
        assert text in markdown
    assert f"{ev.auc_roc:.4f}" in page and f"{ev.auc_roc:.4f}" in markdown


def test_report_leaves_no_figure_open(report: tuple[Evaluation, ReportFiles]) -> None:
    assert _pylab_helpers.Gcf.get_num_fig_managers() == 0


def test_unlabelled_report_has_no_label_metrics(tmp_path: Path) -> None:
    data = random_input(3_000, labelled=False)
    ev = evaluate(data)
    files = write_report(ev, data, tmp_path, None, "Unlabelled")
    assert set(files.figures) == {SCORES_FILE}
    assert set(files.skipped) == {PR_FILE, RELIABILITY_FILE, CARD_PRECISION_FILE, IMPORTANCE_FILE}
    assert not (tmp_path / PR_FILE).exists() and png_size(tmp_path / SCORES_FILE)[0] >= 400
    metrics = json.loads(files.metrics.read_text(encoding="utf-8"))
    assert metrics["labelled"] is False and metrics["auc_roc"] is None and metrics["n_fraud"] is None
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "no fraud labels" in markdown and "no feature importance" in markdown
    for label_metric in ("AUC-ROC", "Precision", "Recall", "False-positive"):
        assert label_metric not in markdown


@pytest.mark.parametrize("fraud", [False, True], ids=["no fraud", "all fraud"])
def test_report_of_a_degenerate_period_says_what_is_undefined(tmp_path: Path, fraud: bool) -> None:
    data = make_input([0.9, 0.6, 0.1], [fraud] * 3)  # one day, three cards (fewer than k), one class
    files = write_report(evaluate(data), data, tmp_path, {"amount_z": 2.0}, "degenerate")  # warnings are errors
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "n/a" in markdown
    assert ("no fraud payment in the period" if not fraud else "no legitimate payment in the period") in markdown
    assert (PR_FILE in files.skipped) is not fraud and CARD_PRECISION_FILE in files.figures
    for name in files.figures:
        assert png_size(tmp_path / name)[0] >= 400


def test_report_refuses_bad_importance_and_mismatched_data(tmp_path: Path) -> None:
    data = make_input(BAND_SCORES, BAND_FRAUD)
    ev = evaluate(data)
    with pytest.raises(ValidationError) as caught:
        write_report(ev, data, tmp_path, {"amount_z": float("nan")}, "x")
    assert caught.value.field == "feature_importance"
    with pytest.raises(ValidationError) as caught:
        write_report(ev, make_input([0.1], [False]), tmp_path, None, "x")
    assert caught.value.field == "data"
