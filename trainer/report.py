"""The evaluation report: PNG plots, ``metrics.json``, and the same document as Markdown and HTML.

Plots are drawn from the aggregates ``trainer.evaluation`` keeps (curves, bins, per-day
values), never from the rows, so a report of a million payments takes about as long as one
of a thousand. Figures use matplotlib's object-oriented API (``Figure``, never pyplot): no
global figure registry, no backend switch, nothing left open once a figure is saved.

The document is built once as plain values (sections of text, tables and images) and then
rendered twice; every piece of text is escaped by the renderer, so user data (scenario and
segment values, the title) cannot inject markup into either format.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from fraudguard.errors import ValidationError
from trainer.evaluation import AMOUNT_SEGMENT, Evaluation, EvaluationInput

PR_FILE = "precision_recall.png"
SCORES_FILE = "score_distribution.png"
IMPORTANCE_FILE = "feature_importance.png"
RELIABILITY_FILE = "reliability.png"
CARD_PRECISION_FILE = "card_precision_per_day.png"
METRICS_FILE = "metrics.json"
MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
TOP_FEATURES = 25
_DPI = 110
_BAND_STYLE = {"challenge": ("#e6a700", "o"), "review": ("#e8590c", "s"), "block": ("#c92a2a", "D")}
_CLASS_COLOR = {"legitimate": "#1c7ed6", "fraud": "#c92a2a", "all": "#495057"}


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """What ``write_report`` wrote."""

    directory: Path
    markdown: Path
    html: Path
    metrics: Path
    figures: Mapping[str, Path]  # file name -> path, of the PNGs written
    skipped: Mapping[str, str]  # file name -> why the figure was not drawn


def write_report(evaluation: Evaluation, data: EvaluationInput, out_dir: Path,
                 feature_importance: Mapping[str, float] | None, title: str) -> ReportFiles:  # fmt: skip
    """Write the plots, ``metrics.json``, ``report.md`` and ``report.html`` of ``evaluation`` into ``out_dir``.

    ``data`` must be the input ``evaluation`` was computed from (checked by size: every plot is drawn
    from ``evaluation``'s aggregates). ``feature_importance``: total gain per feature, or None.
    """
    if len(data) != evaluation.n:
        raise ValidationError("data", f"has {len(data)} payments but the evaluation was computed on {evaluation.n}")
    importance = _check_importance(feature_importance)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures, skipped = _draw_figures(evaluation, importance, out_dir)
    metrics = out_dir / METRICS_FILE
    metrics.write_text(json.dumps(evaluation.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    sections = _document(evaluation, importance, skipped)
    markdown, page = out_dir / MARKDOWN_FILE, out_dir / HTML_FILE
    markdown.write_text(_to_markdown(title, sections), encoding="utf-8")
    page.write_text(_to_html(title, sections), encoding="utf-8")
    return ReportFiles(out_dir, markdown, page, metrics, MappingProxyType(figures), MappingProxyType(skipped))


def _check_importance(importance: Mapping[str, float] | None) -> dict[str, float]:
    """The features with their gain, largest first; ``ValidationError`` for a non-finite or negative gain."""
    out: dict[str, float] = {}
    for name, gain in (importance or {}).items():
        if isinstance(gain, bool) or not isinstance(gain, int | float) or not math.isfinite(gain) or gain < 0:
            raise ValidationError("feature_importance", f"gain of {name!r} must be a finite number >= 0, got {gain!r}")
        out[str(name)] = float(gain)
    return dict(sorted(out.items(), key=lambda item: -item[1]))


# ---------------------------------------------------------------------------------------------- figures

_Drawer = Callable[[Evaluation, dict[str, float]], Figure | str]  # a figure, or why there is none


def _draw_figures(ev: Evaluation, importance: dict[str, float],
                  out_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:  # fmt: skip
    drawers: dict[str, _Drawer] = {
        PR_FILE: _precision_recall_figure,
        SCORES_FILE: _score_figure,
        RELIABILITY_FILE: _reliability_figure,
        CARD_PRECISION_FILE: _card_precision_figure,
        IMPORTANCE_FILE: _importance_figure,
    }
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name, draw in drawers.items():
        figure = draw(ev, importance)
        if isinstance(figure, str):
            skipped[name] = figure
            continue
        written[name] = out_dir / name
        figure.savefig(written[name], dpi=_DPI)
        figure.clear()  # not registered anywhere (no pyplot): clearing frees its artists at once
    return written, skipped


def _precision_recall_figure(ev: Evaluation, _: dict[str, float]) -> Figure | str:
    curve = ev.precision_recall
    if curve is None:
        return ev.undefined.get("average_precision", "no precision-recall curve")
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(curve.recall, curve.precision, color="#1c7ed6", linewidth=1.8, label="model")
    if ev.fraud_rate is not None:
        ax.axhline(ev.fraud_rate, color="#868e96", linestyle=":", label=f"fraud rate {_pct(ev.fraud_rate)}")
    for band in ev.bands:
        if band.precision is not None and band.recall is not None:
            color, marker = _BAND_STYLE[band.band]
            ax.scatter([band.recall], [band.precision], s=90, color=color, marker=marker, zorder=3,
                       edgecolors="black", linewidths=0.6,
                       label=f"{band.band} (score ≥ {band.threshold:.3g}): precision {_pct(band.precision)}, "
                             f"recall {_pct(band.recall)}")  # fmt: skip
    ax.set(xlim=(0, 1.01), ylim=(0, 1.03), xlabel="recall (share of fraud payments flagged)",
           ylabel="precision (share of flagged payments that are fraud)",
           title=f"Precision-recall, average precision {_num(ev.average_precision)}")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    return fig


def _score_figure(ev: Evaluation, _: dict[str, float]) -> Figure:
    hist = ev.score_histogram
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for name, counts in hist.counts.items():
        ax.stairs(counts, hist.edges, color=_CLASS_COLOR[name], linewidth=1.6, label=f"{name} ({sum(counts):,})",
                  fill=name == "fraud", alpha=0.35 if name == "fraud" else 1.0)  # fmt: skip
    for band in ev.bands:
        color, _marker = _BAND_STYLE[band.band]
        ax.axvline(band.threshold, color=color, linestyle="--", linewidth=1.3,
                   label=f"{band.band} ≥ {band.threshold:.3g}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    title = "Score distribution by class" if "fraud" in hist.counts else "Score distribution (no labels)"
    ax.set(xlim=(0, 1), xlabel="score", ylabel="payments per bin (log scale)", title=title)
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="upper right", fontsize=9)
    return fig


def _reliability_figure(ev: Evaluation, _: dict[str, float]) -> Figure | str:
    bins = [b for b in ev.reliability if b.count]
    if not bins:
        return ev.undefined.get("fraud_rate", "no reliability bins")
    fig = Figure(figsize=(8, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    predicted = [b.mean_score for b in bins]
    observed = [b.fraud_rate for b in bins]
    top.plot([0, 1], [0, 1], color="#868e96", linestyle=":", label="perfectly calibrated")
    top.plot(predicted, observed, color="#1c7ed6", marker="o", label="model")
    for b in bins:
        top.annotate(f"n={b.count:,}", (b.mean_score or 0.0, b.fraud_rate or 0.0), textcoords="offset points",
                     xytext=(0, 8), ha="center", fontsize=8, color="#495057")  # fmt: skip
    top.set(xlim=(0, 1), ylim=(-0.03, 1.12), ylabel="observed fraud rate (payments per bin: n)",
            title=f"Reliability: predicted against observed, {len(ev.reliability)} score bins")  # fmt: skip
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=9)
    bottom.bar([b.lower for b in ev.reliability], [b.count for b in ev.reliability], align="edge",
               width=[b.upper - b.lower for b in ev.reliability], color="#adb5bd", edgecolor="#495057")  # fmt: skip
    bottom.set_yscale("log")
    bottom.set(xlabel="score bin (mean score of the bin on the curve above)", ylabel="payments (log)")
    return fig


def _card_precision_figure(ev: Evaluation, _: dict[str, float]) -> Figure | str:
    cp = ev.card_precision
    if cp is None:
        return ev.undefined.get("card_precision", "no card precision")
    days = cp.days
    fig = Figure(figsize=(max(6.0, min(16.0, 2.5 + 0.22 * len(days))), 4.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(days))
    values = [np.nan if d.precision is None else d.precision for d in days]
    bars = ax.bar(x, values, width=0.8, color="#4dabf7", edgecolor="#1c7ed6")
    if len(days) <= 14:
        ax.bar_label(bars, labels=["no card left" if d.precision is None else f"{d.precision:.0%}" for d in days],
                     fontsize=9, color="#343a40", padding=2)  # fmt: skip
    mean = ""
    if cp.mean is not None:
        ax.axhline(cp.mean, color="#c92a2a", linestyle="--", linewidth=1.5)
        mean = f" (dashed: mean {_pct(cp.mean)})"
    step = max(1, math.ceil(len(days) / 15))
    ax.set_xticks(x[::step], [d.day for d in days][::step], rotation=45 if len(days) > 3 else 0, ha="right")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(ylim=(0, 1.08), xlim=(-0.6, len(days) - 0.4), title=f"Card precision@{cp.k} per UTC day{mean}",
           ylabel=f"fraudulent share of the day's top {cp.k} cards",
           xlabel="cards caught on an earlier day are left out of later days' ranking")  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    return fig


def _importance_figure(_: Evaluation, importance: dict[str, float]) -> Figure | str:
    if not importance:
        return "no feature importance was given"
    top = list(importance.items())[:TOP_FEATURES]
    names, gains = [n for n, _ in top][::-1], [g for _, g in top][::-1]  # largest at the top
    total = sum(importance.values())
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(top)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, gains, color="#1c7ed6")
    for y, gain in enumerate(gains):
        share = f" {gain / total:.1%}" if total > 0 else ""
        ax.annotate(share, (gain, y), va="center", fontsize=8, color="#495057")
    shown = f"top {len(top)} of {len(importance)}" if len(importance) > len(top) else f"all {len(top)}"
    ax.set(xlabel="total gain (labels: share of all gain)", title=f"Feature importance by gain ({shown} features)")
    ax.margins(x=0.12)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


# --------------------------------------------------------------------------------------------- document


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Subheading:
    text: str


@dataclass(frozen=True, slots=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: frozenset[int] = frozenset()  # columns aligned right (numbers)


@dataclass(frozen=True, slots=True)
class _Image:
    file: str
    alt: str


_Block = _Text | _Subheading | _Table | _Image


@dataclass(frozen=True, slots=True)
class _Section:
    heading: str
    blocks: tuple[_Block, ...]


def _document(ev: Evaluation, importance: dict[str, float], skipped: dict[str, str]) -> tuple[_Section, ...]:
    def figure(file: str, alt: str) -> _Block:
        return _Text(f"({alt}: not drawn, {skipped[file]}.)") if file in skipped else _Image(file, alt)

    sections = [
        _Section("Summary", (*_summary(ev), _headline(ev))),
        _Section("Actions", (*_bands(ev), figure(SCORES_FILE, "Score distribution by class"))),
    ]
    if ev.labelled:
        ranking = (figure(PR_FILE, "Precision-recall curve"), figure(RELIABILITY_FILE, "Reliability curve"))
        sections += [
            _Section("Ranking and calibration", ranking),
            _Section("Card precision per day", (*_card_precision(ev), figure(CARD_PRECISION_FILE, "Card precision"))),
            _Section("Fraud amount caught", _fraud_amount(ev)),
            _Section("Recall per fraud scenario", _scenarios(ev)),
            _Section("False-positive rate by segment", _fairness(ev)),
        ]
    sections.append(_Section("Feature importance", (figure(IMPORTANCE_FILE, "Feature importance"),)))
    return tuple(sections)


def _summary(ev: Evaluation) -> tuple[_Block, ...]:
    t = ev.thresholds
    blocks: list[_Block] = [_Text(
        f"{ev.n:,} payments from {ev.period_start} to {ev.period_end} ({ev.days} UTC days). Thresholds: "
        f"challenge at a score ≥ {t.challenge:.4g}, review ≥ {t.review:.4g}, block ≥ {t.block:.4g}.")]
    if not ev.labelled:
        blocks.append(_Text("The source has no fraud labels: only counts and the score distribution are reported; "
                            "every metric that needs labels is left out."))  # fmt: skip
    return tuple(blocks)


def _headline(ev: Evaluation) -> _Table:
    why = ev.undefined
    rows = [("Payments", f"{ev.n:,}", "")]
    if ev.labelled:
        cp, amount = ev.card_precision, ev.fraud_amount
        rows += [
            ("Fraud payments", f"{ev.n_fraud:,}", ""),
            ("Fraud rate", _pct(ev.fraud_rate), ""),
            ("AUC-ROC", _num(ev.auc_roc), why.get("auc_roc", "")),
            ("Average precision", _num(ev.average_precision), why.get("average_precision", "")),
            (f"Card precision@{cp.k if cp else ''} (mean per day)", _pct(cp.mean if cp else None), ""),
            ("Fraud amount caught (review or block)", _pct(amount.total.share if amount else None),
             amount.note if amount else ""),
        ]  # fmt: skip
    mix = ev.action_mix
    rows += [(f"Action: {name}", f"{count:,} ({_pct(count / ev.n)})", "")
             for name, count in (("allow", mix.allow), ("challenge", mix.challenge), ("review", mix.review),
                                 ("block", mix.block))]  # fmt: skip
    return _Table(("Metric", "Value", "Note"), tuple(rows), frozenset({1}))


def _bands(ev: Evaluation) -> tuple[_Block, ...]:
    intro = _Text("Each band counts the payments at or above its threshold: a blocked payment also counts as "
                  "reviewed and challenged.")  # fmt: skip
    if not ev.labelled:
        counts = tuple((b.band, f"{b.threshold:.4g}", f"{b.count:,}", _pct(b.rate)) for b in ev.bands)
        return intro, _Table(("Band", "Threshold", "Payments at or above", "Rate"), counts, frozenset({1, 2, 3}))
    rows = tuple((b.band, f"{b.threshold:.4g}", f"{b.count:,}", _pct(b.rate), _pct(b.precision), _pct(b.recall),
                  _num(b.f1)) for b in ev.bands)  # fmt: skip
    header = ("Band", "Threshold", "Payments at or above", "Rate", "Precision", "Recall", "F1")
    return intro, _Table(header, rows, frozenset(range(1, 7)))


def _card_precision(ev: Evaluation) -> tuple[_Block, ...]:
    cp = ev.card_precision
    if cp is None:
        return ()
    values = [d.precision for d in cp.days if d.precision is not None]
    spread = f", from {_pct(min(values))} to {_pct(max(values))}" if values else ""
    short = sum(1 for d in cp.days if d.ranked < cp.k)
    fewer = f" On {short} day(s) fewer than {cp.k} cards were left to rank; precision is over those ranked." \
        if short else ""
    return (_Text(f"Each UTC day, the {cp.k} cards with the highest score that day are checked; a card already "
                  f"caught on an earlier day is left out. Mean {_pct(cp.mean)} over {len(cp.days)} day(s)"
                  f"{spread}.{fewer}"),)  # fmt: skip


def _fraud_amount(ev: Evaluation) -> tuple[_Block, ...]:
    amount = ev.fraud_amount
    if amount is None or not amount.per_currency:
        return (_Text(f"No fraud amount: {amount.note if amount else ev.undefined.get('fraud_amount_caught')}."),)
    rows = [(a.currency, _money(a.fraud_amount), _money(a.caught_amount), _pct(a.share)) for a in amount.per_currency]
    if amount.mixed_currencies:
        t = amount.total
        rows.append(("all (amount units)", _money(t.fraud_amount), _money(t.caught_amount), _pct(t.share)))
    table = _Table(("Currency", "Fraud amount", "Caught (review or block)", "Share caught"), tuple(rows),
                   frozenset({1, 2, 3}))  # fmt: skip
    return (table, _Text(amount.note + ".")) if amount.note else (table,)


def _scenarios(ev: Evaluation) -> tuple[_Block, ...]:
    if not ev.scenarios:
        return (_Text("The fraud payments carry no scenario labels."),)
    rows = tuple((s.scenario, f"{s.frauds:,}", _pct(s.recall_review_or_block), _pct(s.recall_block))
                 for s in ev.scenarios)  # fmt: skip
    header = ("Scenario", "Fraud payments", "Recall: review or block", "Recall: block")
    return (_Table(header, rows, frozenset({1, 2, 3})),)


def _fairness(ev: Evaluation) -> tuple[_Block, ...]:
    blocks: list[_Block] = [_Text(
        "False-positive rate (FPR): legitimate payments sent to review or block, over legitimate payments, per "
        "segment value with enough legitimate payments; the disparity ratio is the highest FPR over the lowest.")]
    for seg in ev.fairness:
        blocks.append(_Subheading("amount band (major units, any currency)" if seg.kind == AMOUNT_SEGMENT
                                  else seg.kind))  # fmt: skip
        if seg.values:
            rows = tuple((r.value, f"{r.legit:,}", f"{r.flagged:,}", _pct(r.fpr)) for r in seg.values)
            blocks.append(_Table(("Value", "Legitimate", "Sent to review or block", "FPR"), rows, frozenset({1, 2, 3})))
        ratio = f"Disparity ratio: {_num(seg.disparity_ratio, '.2f')}" + (f" — {seg.note}" if seg.note else "") + "."
        excluded = f" {seg.excluded_values} value(s) with fewer than {seg.min_legit} legitimate payments left out." \
            if seg.excluded_values else ""
        blocks.append(_Text(ratio + excluded))
    return tuple(blocks)


def _num(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    """A share as a percentage: 12.3%, and below 10% with 3 significant digits (0.199%, 0.00404%)."""
    if value is None:
        return "n/a"
    return f"{value:.1%}" if value == 0 or value >= 0.1 else f"{value * 100:.3g}%"


def _money(value: float) -> str:
    return f"{value:,.2f}"


# -------------------------------------------------------------------------------------------- renderers

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#])")


def _md(text: str) -> str:
    """Plain text as Markdown that renders as that text (no markup, no inline HTML, one line)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _to_markdown(title: str, sections: Iterable[_Section]) -> str:
    lines = [f"# {_md(title)}", ""]
    for section in sections:
        lines += [f"## {_md(section.heading)}", ""]
        for block in section.blocks:
            lines += [*_md_block(block), ""]
    return "\n".join(lines)


def _md_block(block: _Block) -> list[str]:
    match block:
        case _Text(text):
            return [_md(text)]
        case _Subheading(text):
            return [f"### {_md(text)}"]
        case _Image(file, alt):
            return [f"![{_md(alt)}]({file})"]
        case _Table(header, rows, right):
            rule = ["---:" if i in right else "---" for i in range(len(header))]
            return [_md_row(header), _md_row(rule, escape=False), *(_md_row(r) for r in rows)]
    raise TypeError(f"not a block: {block!r}")


def _md_row(cells: Iterable[str], escape: bool = True) -> str:
    return "| " + " | ".join(_md(c) if escape else c for c in cells) + " |"


_STYLE = """body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
  padding: 0 1em; color: #212529; line-height: 1.45 }
table { border-collapse: collapse; margin: 0.8em 0 }
th, td { border: 1px solid #ced4da; padding: 0.3em 0.7em; text-align: left; vertical-align: top }
th { background: #f1f3f5 } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums }
figure { margin: 1em 0 } img { max-width: 100%; height: auto } figcaption { color: #495057; font-size: 0.9em }"""


def _to_html(title: str, sections: Iterable[_Section]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             # defence in depth: no script may run even if something slipped past the escaping
             "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'; object-src 'none'\">",
             f"<title>{e(title)}</title>", f"<style>\n{_STYLE}\n</style>", "</head>", "<body>",
             f"<h1>{e(title)}</h1>"]  # fmt: skip
    for section in sections:
        parts.append(f"<section>\n<h2>{e(section.heading)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


_NUM = ' class="num"'


def _html_block(block: _Block) -> str:
    e = html.escape
    match block:
        case _Text(text):
            return f"<p>{e(text)}</p>"
        case _Subheading(text):
            return f"<h3>{e(text)}</h3>"
        case _Image(file, alt):
            return f'<figure><img src="{e(file)}" alt="{e(alt)}"><figcaption>{e(alt)}</figcaption></figure>'
        case _Table(header, rows, right):
            def cells(tag: str, row: tuple[str, ...]) -> str:
                return "".join(f"<{tag}{_NUM if i in right else ''}>{e(c)}</{tag}>" for i, c in enumerate(row))

            body = "\n".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
            return f"<table>\n<thead><tr>{cells('th', header)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    raise TypeError(f"not a block: {block!r}")
