"""How a fraud model did over a period: ranking quality, the action bands, card precision@k,
fraud money caught, recall per fraud scenario and false-positive rates by segment.

Every metric is computed on every row, vectorised; the only Python loop runs over UTC days
(card precision@k, whose days depend on one another). A metric that cannot be computed is
``None`` with a reason, never 0: ``Evaluation.undefined`` says why for the headline metrics,
and each part carries its own ``note``. Without labels (``EvaluationInput.labelled`` false)
only counts and the score distribution are reported.

``Evaluation`` also keeps the (small) aggregates the report's plots need — a thinned
precision-recall curve, reliability bins and score histograms — so nothing is computed twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_recall_curve, roc_auc_score

from fraudguard.errors import ValidationError
from scoring.model import Thresholds
from trainer.calibrate import BANDS, action_bands

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
S = npt.NDArray[np.str_]

DAY_S = 86_400
AMOUNT_SEGMENT = "amount_band"  # the segment kind derived from ``amount``
AMOUNT_EDGES = (10.0, 100.0, 1_000.0, 10_000.0)  # major currency units
AMOUNT_BANDS = ("<10", "10-100", "100-1k", "1k-10k", ">=10k")
REVIEW, BLOCK = 2, 3  # levels of ``action_bands``: 0 allow, 1 challenge, 2 review, 3 block
ACTIONS = ("allow", "challenge", "review", "block")
MAX_CURVE_POINTS = 1_000  # of the precision-recall curve kept for the plot
NO_LABELS = "the source has no fraud labels"


@dataclass(frozen=True, slots=True, eq=False)
class EvaluationInput:
    """Aligned columns, one row per payment, plus the thresholds the period was scored with.

    Rows need not be sorted. ``scenario`` is the fraud scenario's name, "" for legitimate or
    unknown. ``segments`` maps a segment kind (e.g. "country") to one string per row; the
    amount band (``AMOUNT_SEGMENT``) is derived from ``amount``. When ``labelled`` is false the
    source had no labels: ``is_fraud`` and ``scenario`` are then ignored.
    """

    transaction_id: S
    event_time: I64  # epoch seconds, UTC
    score: F64  # P(fraud) in [0, 1]
    is_fraud: B
    card: S  # card token
    amount: F64  # major currency units, >= 0
    currency: S  # ISO-4217
    scenario: S
    segments: Mapping[str, S]
    thresholds: Thresholds
    labelled: bool = True

    def __post_init__(self) -> None:
        shape = np.shape(self.transaction_id)
        if len(shape) != 1:
            raise ValidationError("transaction_id", f"must be one-dimensional, got shape {shape}")
        n = shape[0]
        if n == 0:
            raise ValidationError("transaction_id", "no payments: nothing to evaluate")
        for name in ("transaction_id", "card", "currency", "scenario"):
            object.__setattr__(self, name, _strings(name, getattr(self, name), n))
        object.__setattr__(self, "event_time", _numbers("event_time", self.event_time, n, "iu", np.int64))
        object.__setattr__(self, "score", _scores(self.score, n))
        object.__setattr__(self, "is_fraud", _numbers("is_fraud", self.is_fraud, n, "b", np.bool_))
        object.__setattr__(self, "amount", _amounts(self.amount, n))
        object.__setattr__(self, "segments", _segments(self.segments, n))
        if not isinstance(self.thresholds, Thresholds):
            raise ValidationError("thresholds", f"must be a scoring.model.Thresholds, got {type(self.thresholds)}")
        if not isinstance(self.labelled, bool):
            raise ValidationError("labelled", f"must be a bool, got {self.labelled!r}")

    def __len__(self) -> int:
        return len(self.score)


def _column(name: str, value: object, n: int, kinds: str) -> npt.NDArray[Any]:
    column = np.asarray(value)
    if column.shape != (n,):
        raise ValidationError(name, f"has shape {column.shape}, expected ({n},) like transaction_id")
    if column.dtype.kind not in kinds:
        raise ValidationError(name, f"has dtype {column.dtype}, expected one of the numpy kinds {kinds!r}")
    return column


def _strings(name: str, value: object, n: int) -> S:
    return _column(name, value, n, "U")


def _numbers(name: str, value: object, n: int, kinds: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
    return _column(name, value, n, kinds).astype(dtype, copy=False)


def _scores(value: object, n: int) -> F64:
    score: F64 = _numbers("score", value, n, "fiu", np.float64)
    bad = np.flatnonzero(~((score >= 0.0) & (score <= 1.0)))  # NaN fails both comparisons
    if len(bad):
        raise ValidationError("score", f"{len(bad)} scores are NaN or outside [0, 1], the first "
                              f"{score[bad[0]]} at row {bad[0]}")  # fmt: skip
    return score


def _amounts(value: object, n: int) -> F64:
    amount: F64 = _numbers("amount", value, n, "fiu", np.float64)
    bad = np.flatnonzero(~(np.isfinite(amount) & (amount >= 0.0)))
    if len(bad):
        raise ValidationError("amount", f"{len(bad)} amounts are negative or not finite, the first "
                              f"{amount[bad[0]]} at row {bad[0]}")  # fmt: skip
    return amount


def _segments(value: object, n: int) -> Mapping[str, S]:
    if not isinstance(value, Mapping):
        raise ValidationError("segments", f"must be a mapping of segment kind to column, got {type(value)}")
    out: dict[str, S] = {}
    for kind, column in value.items():
        if not isinstance(kind, str) or not kind or kind == AMOUNT_SEGMENT:
            raise ValidationError("segments", f"bad segment kind {kind!r}: need a non-empty string other than "
                                  f"{AMOUNT_SEGMENT!r}, which is derived from amount")  # fmt: skip
        out[kind] = _strings(f"segments.{kind}", column, n)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class ActionMix:
    """How many payments got each action (each payment counted once, under its own action)."""

    allow: int
    challenge: int
    review: int
    block: int


@dataclass(frozen=True, slots=True)
class BandMetrics:
    """The payments at or above one band's threshold: a blocked payment also counts as reviewed and challenged."""

    band: str  # challenge, review or block
    threshold: float
    count: int  # payments at or above the threshold
    rate: float  # count / n
    precision: float | None  # share of them that is fraud; None without labels or when none is flagged
    recall: float | None  # share of fraud payments among them; None without labels or fraud
    f1: float | None  # 2 TP / (2 TP + FP + FN); None without labels, or with no fraud and nothing flagged


@dataclass(frozen=True, slots=True)
class DayPrecision:
    """Card precision@k on one UTC day."""

    day: str  # ISO date
    cards: int  # cards paying that day that were not caught on an earlier day
    ranked: int  # min(k, cards): the cards an analyst would check
    fraud_cards: int  # of those ranked, the cards with at least one fraud payment that day
    precision: float | None  # fraud_cards / ranked; None when every card of the day was caught before


@dataclass(frozen=True, slots=True)
class CardPrecision:
    """Card precision@k per day (Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud
    Detection*): each day, the k cards with the highest score that day, cards caught earlier left out."""

    k: int
    days: tuple[DayPrecision, ...]
    mean: float | None  # over the days that have a value


@dataclass(frozen=True, slots=True)
class AmountCaught:
    """Fraud money sent to review or block, in one currency (or summed over all)."""

    currency: str  # ISO code; for a total over mixed currencies, "" ("amount units")
    fraud_amount: float  # all fraud, major units
    caught_amount: float  # fraud at review or block
    share: float | None  # caught / fraud; None when there is no fraud amount


@dataclass(frozen=True, slots=True)
class FraudAmountCaught:
    """Fraud amount caught, per currency and in total."""

    per_currency: tuple[AmountCaught, ...]  # by currency code
    total: AmountCaught
    mixed_currencies: bool  # the fraud payments are in more than one currency: the total mixes units
    note: str


@dataclass(frozen=True, slots=True)
class ScenarioRecall:
    """How much of one fraud scenario's payments the bands caught."""

    scenario: str
    frauds: int  # fraud payments labelled with this scenario
    review_or_block: int
    block: int
    recall_review_or_block: float  # review_or_block / frauds
    recall_block: float  # block / frauds


@dataclass(frozen=True, slots=True)
class SegmentRate:
    """The false-positive rate of one segment value: legitimate payments sent to review or block."""

    value: str
    legit: int
    flagged: int
    fpr: float  # flagged / legit


@dataclass(frozen=True, slots=True)
class SegmentFairness:
    """False-positive rates across the values of one segment kind, and how far apart they are."""

    kind: str  # e.g. country, channel, amount_band
    values: tuple[SegmentRate, ...]  # values with at least min_legit legitimate payments
    min_legit: int
    excluded_values: int  # values with fewer legitimate payments, left out
    min_fpr: float | None
    max_fpr: float | None
    disparity_ratio: float | None  # max_fpr / min_fpr; None when it is undefined (see note)
    note: str  # why the ratio is None, else ""


@dataclass(frozen=True, slots=True)
class PrecisionRecallCurve:
    """The precision-recall curve over all thresholds, thinned to at most ``MAX_CURVE_POINTS`` points."""

    precision: tuple[float, ...]
    recall: tuple[float, ...]  # non-increasing


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Payments whose score is in [lower, upper) (the last bin includes 1): predicted against observed fraud."""

    lower: float
    upper: float
    count: int
    mean_score: float | None  # None for an empty bin
    fraud_rate: float | None


@dataclass(frozen=True, slots=True)
class ScoreHistogram:
    """Counts of scores per bin and class: "legitimate" and "fraud", or "all" without labels."""

    edges: tuple[float, ...]
    counts: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything measured over one period. ``to_dict()`` is JSON-ready (no NaN or infinity)."""

    n: int  # payments
    labelled: bool  # false: every metric that needs labels is None
    period_start: str  # ISO-8601 UTC time of the first payment
    period_end: str  # ... and of the last
    days: int  # distinct UTC days with payments
    thresholds: Thresholds
    n_fraud: int | None
    fraud_rate: float | None
    auc_roc: float | None
    average_precision: float | None
    action_mix: ActionMix
    bands: tuple[BandMetrics, ...]  # challenge, review, block
    card_precision: CardPrecision | None
    fraud_amount: FraudAmountCaught | None
    scenarios: tuple[ScenarioRecall, ...]  # empty without scenario labels
    fairness: tuple[SegmentFairness, ...]  # per segment kind, amount_band last; empty without labels
    score_histogram: ScoreHistogram
    precision_recall: PrecisionRecallCurve | None  # None without labels or fraud
    reliability: tuple[ReliabilityBin, ...]  # empty without labels
    undefined: Mapping[str, str]  # headline metric -> why it is None

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, numbers, strings and None, for ``json.dumps(..., allow_nan=False)``."""
        plain = _plain(self)
        assert isinstance(plain, dict)
        return plain


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def evaluate(data: EvaluationInput, *, k: int = 100, min_segment_legit: int = 100, reliability_bins: int = 10,
             histogram_bins: int = 50) -> Evaluation:
    """Measure ``data``: ``k`` cards per day for card precision@k; a segment value needs ``min_segment_legit``
    legitimate payments to enter the FPR comparison; plot aggregates with the given numbers of bins."""
    for name, value in (("k", k), ("min_segment_legit", min_segment_legit), ("reliability_bins", reliability_bins),
                        ("histogram_bins", histogram_bins)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(name, f"must be an integer >= 1, got {value!r}")
    bands = action_bands(data.score, data.thresholds)
    y = data.is_fraud if data.labelled else None
    ranking = _Ranking.of(y, data.score)
    return Evaluation(
        n=len(data),
        labelled=y is not None,
        period_start=_iso_time(int(data.event_time.min())),
        period_end=_iso_time(int(data.event_time.max())),
        days=len(np.unique(data.event_time // DAY_S)),
        thresholds=data.thresholds,
        n_fraud=int(np.count_nonzero(y)) if y is not None else None,
        fraud_rate=float(np.mean(y)) if y is not None else None,
        auc_roc=ranking.auc_roc,
        average_precision=ranking.average_precision,
        action_mix=ActionMix(*(int(c) for c in np.bincount(bands, minlength=len(ACTIONS)))),
        bands=band_metrics(bands, y, data.thresholds),
        card_precision=card_precision_at_k(data.event_time, data.card, data.score, y, k) if y is not None else None,
        fraud_amount=fraud_amount_caught(data.amount, data.currency, y, bands >= REVIEW) if y is not None else None,
        scenarios=scenario_recall(data.scenario, y, bands) if y is not None else (),
        fairness=segment_fairness(_segment_codes(data), y, bands >= REVIEW, min_segment_legit) if y is not None else (),
        score_histogram=score_histogram(data.score, y, histogram_bins),
        precision_recall=ranking.curve,
        reliability=reliability(data.score, y, reliability_bins) if y is not None else (),
        undefined=MappingProxyType(ranking.undefined),
    )


def _iso_time(epoch_s: int) -> str:
    return f"{np.datetime64(epoch_s, 's')}Z"


@dataclass(frozen=True, slots=True)
class _Ranking:
    """AUC-ROC, average precision and the precision-recall curve, or why they are undefined."""

    auc_roc: float | None
    average_precision: float | None
    curve: PrecisionRecallCurve | None
    undefined: dict[str, str]

    @classmethod
    def of(cls, y: B | None, score: F64) -> _Ranking:
        if y is None:
            reason = NO_LABELS
            return cls(None, None, None, {"n_fraud": reason, "fraud_rate": reason, "auc_roc": reason,
                                          "average_precision": reason, "card_precision": reason,
                                          "fraud_amount_caught": reason})  # fmt: skip
        n_fraud = int(np.count_nonzero(y))
        if n_fraud == 0:
            reason = "no fraud payment in the period"
            return cls(None, None, None, {"auc_roc": reason, "average_precision": reason})
        precision, recall, _ = precision_recall_curve(y, score)
        # the step-wise sum of sklearn's average_precision_score, on the curve we keep anyway
        ap = float(-np.sum(np.diff(recall) * precision[:-1]))
        curve = _thin_curve(np.asarray(precision, np.float64), np.asarray(recall, np.float64))
        if n_fraud == len(y):
            return cls(None, ap, curve, {"auc_roc": "no legitimate payment in the period"})
        return cls(float(roc_auc_score(y, score)), ap, curve, {})


def _thin_curve(precision: F64, recall: F64) -> PrecisionRecallCurve:
    """At most ``MAX_CURVE_POINTS`` points, spread evenly over both the thresholds and the recall axis."""
    n = len(precision)
    if n > MAX_CURVE_POINTS:
        half = MAX_CURVE_POINTS // 2
        by_index = np.linspace(0, n - 1, half).round().astype(np.int64)
        by_recall = np.searchsorted(-recall, -np.linspace(1.0, 0.0, half), side="left").clip(0, n - 1)
        keep = np.unique(np.concatenate([by_index, by_recall]))
        precision, recall = precision[keep], recall[keep]
    return PrecisionRecallCurve(tuple(precision.tolist()), tuple(recall.tolist()))


def band_metrics(bands: I64, y: B | None, thresholds: Thresholds) -> tuple[BandMetrics, ...]:
    """Count, rate, precision, recall and F1 of the payments at or above each band (levels of ``action_bands``)."""
    out = []
    frauds = int(np.count_nonzero(y)) if y is not None else 0
    for level, name in enumerate(BANDS, start=1):
        flagged = bands >= level
        count = int(np.count_nonzero(flagged))
        precision = recall = f1 = None
        if y is not None:
            tp = int(np.count_nonzero(flagged & y))
            precision = tp / count if count else None
            recall = tp / frauds if frauds else None
            denominator = count + frauds  # 2 TP + FP + FN, as FP = count - TP and FN = frauds - TP
            f1 = 2 * tp / denominator if denominator else None
        out.append(BandMetrics(name, float(getattr(thresholds, name)), count, count / len(bands),
                               precision, recall, f1))  # fmt: skip
    return tuple(out)


def card_precision_at_k(event_time: I64, card: S, score: F64, y: B, k: int) -> CardPrecision:
    """Per UTC day: rank the day's cards by their highest score that day, take the top ``k`` (fewer if the day
    has fewer cards), precision = share of them with a fraud payment that day. A card caught (fraudulent and
    in the top ``k``) is left out of every later day's ranking."""
    day = event_time // DAY_S
    cards, card_code = np.unique(card, return_inverse=True)
    n_cards = len(cards)
    group_key, top_score, any_fraud = _max_and_any_per_key((day - day.min()) * n_cards + card_code, score, y)
    group_day, group_card = np.divmod(group_key, n_cards)
    caught = np.zeros(n_cards, np.bool_)
    starts = np.flatnonzero(np.r_[True, group_day[1:] != group_day[:-1]])
    stops = np.r_[starts[1:], len(group_key)]
    days = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        rows = slice(start, stop)
        iso_day = str(np.datetime64(int(group_day[start] + day.min()), "D"))
        days.append(_one_day(iso_day, group_card[rows], top_score[rows], any_fraud[rows], caught, k))
    values = [d.precision for d in days if d.precision is not None]
    return CardPrecision(k, tuple(days), float(np.mean(values)) if values else None)


def _max_and_any_per_key(key: I64, score: F64, y: B) -> tuple[I64, F64, B]:
    """Distinct keys (sorted), with the highest score and whether any row is fraud, per key."""
    order = np.lexsort((score, key))  # by key, then score: a key's last row has its highest score
    sorted_key = key[order]
    last = np.flatnonzero(np.r_[sorted_key[1:] != sorted_key[:-1], True])
    first = np.r_[0, last[:-1] + 1]
    any_fraud = np.logical_or.reduceat(y[order], first)
    return sorted_key[last], score[order][last], any_fraud


def _one_day(day: str, card: I64, score: F64, fraud: B, caught: B, k: int) -> DayPrecision:
    """Precision@k of one day's cards; marks the fraudulent cards of the top k in ``caught``."""
    fresh = ~caught[card]
    card, score, fraud = card[fresh], score[fresh], fraud[fresh]
    top = np.argsort(-score, kind="stable")[:k]
    hits = fraud[top]
    caught[card[top][hits]] = True
    n_hits = int(np.count_nonzero(hits))
    return DayPrecision(day, len(card), len(top), n_hits, n_hits / len(top) if len(top) else None)


def fraud_amount_caught(amount: F64, currency: S, y: B, caught: B) -> FraudAmountCaught:
    """Fraud amount at review or block (``caught``) over all fraud amount, per currency and in total."""
    codes, which = np.unique(currency[y], return_inverse=True)
    fraud_sum = np.bincount(which, weights=amount[y], minlength=len(codes))
    caught_sum = np.bincount(which, weights=np.where(caught[y], amount[y], 0.0), minlength=len(codes))
    per_currency = tuple(_amount(str(c), float(f), float(h)) for c, f, h in zip(codes, fraud_sum, caught_sum,
                                                                                strict=True))  # fmt: skip
    mixed = len(codes) > 1
    total = _amount("" if mixed else (str(codes[0]) if len(codes) else ""), float(fraud_sum.sum()),
                    float(caught_sum.sum()))  # fmt: skip
    if not len(codes):
        note = "no fraud payment in the period"
    elif mixed:
        note = (f"currencies are mixed ({', '.join(str(c) for c in codes)}): the total adds amounts in different "
                "currencies as plain 'amount units'; compare per currency")
    else:
        note = ""
    return FraudAmountCaught(per_currency, total, mixed, note)


def _amount(currency: str, fraud: float, caught: float) -> AmountCaught:
    return AmountCaught(currency, fraud, caught, caught / fraud if fraud > 0 else None)


def scenario_recall(scenario: S, y: B, bands: I64) -> tuple[ScenarioRecall, ...]:
    """Per named fraud scenario: the share of its fraud payments sent to review or block, and to block."""
    named = y & (scenario != "")
    names, which = np.unique(scenario[named], return_inverse=True)
    frauds = np.bincount(which, minlength=len(names))
    reviewed = np.bincount(which, weights=bands[named] >= REVIEW, minlength=len(names))
    blocked = np.bincount(which, weights=bands[named] >= BLOCK, minlength=len(names))
    return tuple(ScenarioRecall(str(s), int(f), int(r), int(b), float(r / f), float(b / f))
                 for s, f, r, b in zip(names, frauds, reviewed, blocked, strict=True))  # fmt: skip


def amount_band_codes(amount: F64) -> I64:
    """Index into ``AMOUNT_BANDS`` of each amount."""
    return np.searchsorted(np.array(AMOUNT_EDGES), amount, side="right").astype(np.int64)


def _segment_codes(data: EvaluationInput) -> dict[str, tuple[tuple[str, ...], I64]]:
    """Per segment kind: its values and each row's index into them (amount bands in their natural order)."""
    out: dict[str, tuple[tuple[str, ...], I64]] = {}
    for kind, column in data.segments.items():
        values, codes = np.unique(column, return_inverse=True)
        out[kind] = (tuple(str(v) for v in values), codes.astype(np.int64))
    out[AMOUNT_SEGMENT] = (AMOUNT_BANDS, amount_band_codes(data.amount))
    return out


def segment_fairness(segments: Mapping[str, tuple[tuple[str, ...], I64]], y: B, flagged: B,
                     min_legit: int) -> tuple[SegmentFairness, ...]:  # fmt: skip
    """False-positive rate (legitimate payments ``flagged`` over legitimate payments) per segment value with at
    least ``min_legit`` legitimate payments, and per kind the disparity ratio max FPR / min FPR."""
    legit = ~y
    flagged_legit = flagged[legit]
    out = []
    for kind, (values, codes) in segments.items():
        legit_codes = codes[legit]
        n = np.bincount(legit_codes, minlength=len(values))
        hits = np.bincount(legit_codes, weights=flagged_legit, minlength=len(values)).astype(np.int64)
        rates = tuple(SegmentRate(values[i], int(n[i]), int(hits[i]), float(hits[i] / n[i]))
                      for i in np.flatnonzero(n >= min_legit).tolist())  # fmt: skip
        out.append(_fairness(kind, rates, min_legit, int(np.count_nonzero((n > 0) & (n < min_legit)))))
    return tuple(out)


def _fairness(kind: str, rates: tuple[SegmentRate, ...], min_legit: int, excluded: int) -> SegmentFairness:
    if not rates:
        note = f"no value has {min_legit} legitimate payments or more: nothing to compare"
        return SegmentFairness(kind, rates, min_legit, excluded, None, None, None, note)
    fpr = [r.fpr for r in rates]
    low, high = min(fpr), max(fpr)
    ratio, note = None, ""
    if len(rates) == 1:
        note = f"only one value has {min_legit} legitimate payments or more: nothing to compare"
    elif high == 0:
        note = "no legitimate payment of any value was sent to review or block (every FPR is 0): no ratio"
    elif low == 0:
        zero = ", ".join(r.value for r in rates if r.fpr == 0)
        note = f"the lowest FPR is 0 (for {zero}): the ratio max / min is unbounded, reported as None"
    else:
        ratio = high / low
    return SegmentFairness(kind, rates, min_legit, excluded, low, high, ratio, note)


def score_histogram(score: F64, y: B | None, bins: int) -> ScoreHistogram:
    """Counts of scores in ``bins`` equal bins over [0, 1], per class (or for all payments without labels)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    classes = {"all": score} if y is None else {"legitimate": score[~y], "fraud": score[y]}
    counts = {name: tuple(np.histogram(s, edges)[0].tolist()) for name, s in classes.items()}
    return ScoreHistogram(tuple(edges.tolist()), MappingProxyType(counts))


def reliability(score: F64, y: B, bins: int) -> tuple[ReliabilityBin, ...]:
    """Mean score against observed fraud rate in ``bins`` equal score bins over [0, 1]."""
    which = np.minimum((score * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    score_sum = np.bincount(which, weights=score, minlength=bins)
    fraud_sum = np.bincount(which, weights=y, minlength=bins)
    return tuple(ReliabilityBin(i / bins, (i + 1) / bins, int(c), float(s / c) if c else None,
                                float(f / c) if c else None)
                 for i, (c, s, f) in enumerate(zip(count, score_sum, fraud_sum, strict=True)))  # fmt: skip
