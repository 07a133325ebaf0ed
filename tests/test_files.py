"""Payment files: round trips, column mappings, every kind of bad row, unreadable files, raw card numbers."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard.currencies import EXPONENTS
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from fraudguard.redaction import luhn_valid
from fraudguard.security import PanTokenizer
from trainer.files import (
    CANONICAL_FIELDS,
    MAX_TIME,
    MIN_TIME,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    BadRow,
    ColumnMapping,
    ImportedPayments,
    ImportOptions,
    read_payments,
    write_payments,
)
from trainer.payments import Payments
from trainer.synthetic import SyntheticConfig, generate_payments

KEY = b"k" * 32
HEADER = ("transaction_id", "timestamp", "amount", "currency", "card", "card_bin", "card_last4", "customer",
          "merchant", "mcc", "merchant_country", "device", "ip", "latitude", "longitude", "channel", "entry_mode",
          "label", "scenario", "label_time")
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
VISA = "4111111111111111"
MASTERCARD = "5500005555555559"
AMEX = "378282246310005"
PAN_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


@pytest.fixture(autouse=True)
def _no_server_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up a PAN key file lying around in the working directory."""
    monkeypatch.setenv("FRAUDGUARD_DATA_DIR", str(tmp_path / "no-data-dir"))
    monkeypatch.delenv("FRAUDGUARD_PAN_KEY_FILE", raising=False)


@pytest.fixture(scope="module")
def synthetic() -> Payments:
    return generate_payments(SyntheticConfig(n_transactions=3_000, seed=5))


def assert_same_payments(a: Payments, b: Payments) -> None:
    for f in dataclasses.fields(Payments):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype.kind == y.dtype.kind, f.name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f.name
    assert a.fingerprint() == b.fingerprint()  # whatever the NumPy string widths


def write_csv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> list[int]:
    """Write ``header`` and ``rows``; return the file line each row starts on."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    lines = []
    for row in rows:
        lines.append(out.getvalue().count("\n") + 1)
        writer.writerow(row)
    path.write_text(out.getvalue(), encoding="utf-8")
    return lines


def good_row(i: int, **changes: str) -> list[str]:
    """A valid row of ``HEADER``; ``changes`` override fields by name."""
    values = {
        "transaction_id": f"tx-{i}", "timestamp": f"2024-01-01T00:{i % 60:02d}:00Z", "amount": "12.34",
        "currency": "EUR", "card": f"card-{i}", "card_bin": "411111", "card_last4": "1111", "customer": "cust-1",
        "merchant": "m-1", "mcc": "5411", "merchant_country": "de", "device": "dev-1", "ip": "10.0.0.1",
        "latitude": "52.52", "longitude": "13.4", "channel": "ecommerce", "entry_mode": "CHIP", "label": "0",
        "scenario": "", "label_time": "",
    }  # fmt: skip
    values.update(changes)
    return [values[name] for name in HEADER]


def pan_runs(text: str) -> list[str]:
    """Luhn-valid 13–19 digit runs (spaces or dashes allowed), as the log redaction finds them."""
    return [m.group(0) for m in PAN_RUN.finditer(text) if luhn_valid(re.sub(r"[ -]", "", m.group(0)))]


def all_text(result: ImportedPayments) -> str:
    columns = [" ".join(map(str, getattr(result.payments, f.name).tolist())) for f in dataclasses.fields(Payments)]
    return "\n".join([*columns, result.report.summary(), repr(result.report)])


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".pq"])
def test_round_trip_gives_the_same_payments(synthetic: Payments, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"payments{suffix}"
    write_payments(synthetic, path)
    result = read_payments(path)
    assert_same_payments(result.payments, synthetic)
    assert result.provided == frozenset(OPTIONAL_FIELDS)
    assert result.report.rows_read == result.report.rows_imported == len(synthetic)
    assert result.report.problems == () and result.report.warnings == ()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_written_csv_speaks_canonical_names_and_plain_text(synthetic: Payments, tmp_path: Path) -> None:
    path = tmp_path / "p.csv.gz"
    write_payments(synthetic, path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == HEADER
    fraud = next(i for i, r in enumerate(rows) if r["label"] == "1")
    legit = int(np.flatnonzero(~synthetic.is_fraud)[0])
    jpy = next(i for i, r in enumerate(rows) if r["currency"] == "JPY")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["timestamp"])
    assert rows[jpy]["amount"] == str(synthetic.amount_minor[jpy])
    usd = next(i for i, r in enumerate(rows) if r["currency"] == "USD")
    assert rows[usd]["amount"] == f"{synthetic.amount_minor[usd] // 100}.{synthetic.amount_minor[usd] % 100:02d}"
    assert rows[0]["channel"].startswith("CHANNEL_") and rows[0]["entry_mode"].startswith("ENTRY_MODE_")
    assert rows[legit]["label"] == "0" and rows[legit]["label_time"] == "" and rows[legit]["scenario"] == ""
    assert rows[fraud]["label_time"].endswith("Z") and rows[fraud]["scenario"] == synthetic.scenario[fraud]
    no_device = next(i for i, r in enumerate(rows) if r["device"] == "")
    assert synthetic.device_id[no_device] == ""
    no_location = int(np.flatnonzero(np.isnan(synthetic.latitude))[0])
    assert rows[no_location]["latitude"] == rows[no_location]["longitude"] == ""


def test_written_parquet_has_typed_columns(synthetic: Payments, tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_payments(synthetic, path)
    schema = pq.read_schema(path)
    assert schema.names == list(HEADER)
    for name in ("timestamp", "label_time"):  # Parquet has no seconds unit: pyarrow stores milliseconds
        assert pa.types.is_timestamp(schema.field(name).type) and schema.field(name).type.tz == "UTC"
    assert pa.types.is_decimal(schema.field("amount").type)
    assert schema.field("label").type == pa.bool_()
    table = pq.read_table(path)
    assert table.column("label_time").null_count == int((~synthetic.is_fraud).sum())


def test_write_replaces_an_existing_file_whole(synthetic: Payments, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("old contents\n")
    write_payments(synthetic.take(slice(0, 10)), path)
    assert len(read_payments(path).payments) == 10
    with pytest.raises(ValidationError, match="unknown file type"):
        write_payments(synthetic, tmp_path / "p.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


# --- mappings and defaults --------------------------------------------------------------------


def test_mapping_with_renamed_columns_reads_required_fields_and_label(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    rows = [["B", "1704067260", "5.00", "card-b", "no", "x"], ["A", "2024-01-01T00:00:00Z", "1.5", "card-a", "", "y"],
            ["C", "1704067200", "0.10", "card-c", "Chargeback", "z"]]
    write_csv(path, rows, header=("ID", "TS", "AMT", "CARD", "IS_FRAUD", "NOTE"))
    mapping = ColumnMapping.parse(" transaction_id = ID ,timestamp=TS, amount=AMT,card=CARD,label=IS_FRAUD")
    result = read_payments(path, mapping, ImportOptions(label_delay_s=3600.0))
    p = result.payments
    assert result.provided == frozenset({"label"})
    assert p.transaction_id.tolist() == ["A", "C", "B"]  # by time; A and C tie and keep file order
    assert p.event_time.tolist() == [T0, T0, T0 + 60]
    assert p.amount_minor.tolist() == [150, 10, 500]
    assert p.is_fraud.tolist() == [False, True, False]
    assert p.label_time.tolist() == [math.inf, T0 + 3600.0, math.inf]
    assert p.currency.tolist() == ["USD"] * 3
    assert p.card_bin.tolist() == p.card_last4.tolist() == p.customer_id.tolist() == p.scenario.tolist() == [""] * 3
    assert np.isnan(p.latitude).all() and np.isnan(p.longitude).all()
    assert p.mcc.tolist() == p.channel.tolist() == p.entry_mode.tolist() == [0, 0, 0]


def test_missing_optional_columns_take_defaults_and_provided_says_which(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    header = ("transaction_id", "timestamp", "amount", "card", "merchant", "label", "unrelated")
    write_csv(path, [["t1", "2024-01-01T00:00:00Z", "1200", "c1", "m1", "1", "?"]], header=header)
    result = read_payments(path, options=ImportOptions(default_currency="jpy"))
    assert result.provided == frozenset({"merchant", "label"})
    p = result.payments
    assert p.merchant_id.tolist() == ["m1"] and p.currency.tolist() == ["JPY"] and p.amount_minor.tolist() == [1200]
    assert p.label_time.tolist() == [T0 + 7 * 86400.0] and p.device_id.tolist() == [""]


def test_a_mapping_is_complete_not_merged_with_canonical_names(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    write_csv(path, [["t1", "2024-01-01T00:00:00Z", "1", "c1", "EUR"]],
              header=("transaction_id", "timestamp", "amount", "card", "currency"))
    mapping = ColumnMapping.of({"transaction_id": "transaction_id", "timestamp": "timestamp", "amount": "amount",
                                "card": "card"})
    result = read_payments(path, mapping)
    assert result.provided == frozenset() and result.payments.currency.tolist() == ["USD"]
    assert read_payments(path).payments.currency.tolist() == ["EUR"]


def test_column_mapping_parse_errors_name_the_option() -> None:
    cases = {
        "transaction_id=ID,amout=A": "unknown field 'amout'; known fields: transaction_id, timestamp",
        "card=A,card=B": "field 'card' is given twice",
        "card=": "field 'card' has an empty column name",
        "=A": "empty field name",
        "card": "expected field=COLUMN",
        "card=A,": "expected field=COLUMN",
    }
    for text, message in cases.items():
        with pytest.raises(ValidationError) as caught:
            ColumnMapping.parse(text)
        assert caught.value.field == "--map" and message in caught.value.message, text
    assert ColumnMapping.parse(" Card = A B ,amount=X").pairs == (("amount", "X"), ("card", "A B"))
    with pytest.raises(ValidationError, match="unknown field 'x'"):
        ColumnMapping.of({"x": "y"})


def test_column_mapping_resolve_lists_the_files_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    write_csv(path, [["1", "2", "3"]], header=("ID", "WHEN", "HOW_MUCH"))
    with pytest.raises(ValidationError) as caught:
        read_payments(path)
    assert "required field 'transaction_id' has no column" in str(caught.value)
    assert "p.csv has columns: 'ID', 'WHEN', 'HOW_MUCH'" in str(caught.value)
    mapping = ColumnMapping.parse("transaction_id=ID,timestamp=WHEN,amount=HOW_MUCH,card=CARD")
    with pytest.raises(ValidationError, match=r"card='CARD': no such column; p.csv has columns: 'ID'"):
        read_payments(path, mapping)
    half = ColumnMapping.parse("transaction_id=ID,timestamp=WHEN,amount=HOW_MUCH,card=ID,latitude=ID")
    with pytest.raises(ValidationError, match="latitude and longitude go together"):
        read_payments(path, half)


def test_import_options_are_checked() -> None:
    for changes, name in [({"default_currency": "EURO"}, "default_currency"), ({"max_bad_fraction": 1.5},
                          "max_bad_fraction"), ({"pan_key": b"short"}, "pan_key"), ({"max_reported_rows": -1},
                          "max_reported_rows"), ({"amount_unit": "cents"}, "amount_unit")]:
        with pytest.raises(ValidationError) as caught:
            ImportOptions(**changes)  # type: ignore[arg-type]
        assert caught.value.field == name


# --- values -----------------------------------------------------------------------------------


def test_times_in_every_accepted_form(tmp_path: Path) -> None:
    forms = ["1704067200", "1704067200.999", "+1704067200", "1.7040672e9", "2024-01-01T00:00:00Z",
             "2024-01-01t00:00:00.75z", "2024-01-01T05:30:00+05:30", "2023-12-31T19:00:00-0500",
             "2024-01-01 00:00:00", "2024-01-01T00:00", "2024-01-01", "2024-01-01T01:00:00,123456789999+01"]
    path = tmp_path / "t.csv"
    write_csv(path, [good_row(i, timestamp=form) for i, form in enumerate(forms)])
    result = read_payments(path)
    assert result.report.problems == ()
    assert result.payments.event_time.tolist() == [T0] * len(forms)
    assert result.payments.transaction_id.tolist() == [f"tx-{i}" for i in range(len(forms))]  # stable order


def test_parquet_times_numbers_and_labels_in_native_types(tmp_path: Path) -> None:
    path = tmp_path / "native.parquet"
    n = 4
    when_ms = pa.array([(T0 + i) * 1000 + 999 for i in range(n)], pa.timestamp("ms", "Europe/Berlin"))
    pq.write_table(pa.table({
        "transaction_id": pa.array([10, 11, 12, 13]),
        "timestamp": when_ms,
        "amount": pa.array([12.345, 0.1, 1e3, 7.0]),
        "card": pa.array(["a", "b", "c", "d"]).dictionary_encode(),
        "mcc": pa.array([5411, 0, 9999, None], pa.int16()),
        "latitude": pa.array([1.5, None, -90.0, 0.0]),
        "longitude": pa.array([2.5, None, 180.0, 0.0]),
        "label": pa.array([True, False, None, True]),
        "label_time": pa.array([T0 + 5.0, None, None, T0 + 3.9]),
        "channel": pa.array([2, 0, 6, 1], pa.int8()),
    }), path)  # fmt: skip
    result = read_payments(path)
    p = result.payments
    assert result.report.problems == () and result.report.row_unit == "row"
    assert p.transaction_id.tolist() == ["10", "11", "12", "13"]
    assert p.event_time.tolist() == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert p.amount_minor.tolist() == [1235, 10, 100000, 700]
    assert p.mcc.tolist() == [5411, 0, 9999, 0]
    assert np.isnan(p.latitude[1]) and p.latitude[2] == -90.0 and p.longitude[2] == 180.0
    assert p.is_fraud.tolist() == [True, False, False, True]
    assert p.label_time.tolist() == [T0 + 5.0, math.inf, math.inf, T0 + 3.0]
    assert p.channel.tolist() == [2, 0, 6, 1]
    assert any("rounded" in w for w in result.report.warnings)


def test_amounts_follow_the_currency_exponent_and_round_half_up(tmp_path: Path) -> None:
    cases = [("12.34", "USD", 1234), ("12.345", "usd", 1235), ("12.344999", "USD", 1234), ("1200", "JPY", 1200),
             ("1199.5", "JPY", 1200), ("0.125", "BHD", 125), ("1.00005", "CLF", 10001), (".5", "EUR", 50),
             ("5.", "EUR", 500), ("12.3400", "EUR", 1234), ("1.5e3", "EUR", 150000), ("0", "EUR", 0),
             ("-0", "EUR", 0), ("9999999999999.99", "USD", 10**15 - 1), ("10000000000000.00", "USD", 10**15)]
    path = tmp_path / "a.csv"
    write_csv(path, [good_row(i, amount=a, currency=c) for i, (a, c, _) in enumerate(cases)])
    result = read_payments(path)
    assert result.report.problems == ()
    assert result.payments.amount_minor.tolist() == [m for _, _, m in cases]
    assert "4 amounts had more decimals than their currency and were rounded" in result.report.warnings


def test_minor_unit_amounts_must_be_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    lines = write_csv(path, [good_row(0, amount="1234"), good_row(1, amount="12.5"), good_row(2, amount="7.000"),
                             good_row(3, amount="1000000000000001")])
    result = read_payments(path, options=ImportOptions(amount_unit="minor"))
    assert result.payments.amount_minor.tolist() == [1234, 7]
    assert result.report.examples == (BadRow(lines[1], "amount", "not a whole number of minor units"),
                                      BadRow(lines[3], "amount", "above 10^15 minor units"))


def test_enums_labels_and_text_fields_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    write_csv(path, [
        good_row(0, channel="CHANNEL_ECOMMERCE", entry_mode="entry_mode_card_on_file", label="FRAUD",
                 scenario=" Card_Testing ", merchant_country="gb", currency=" gbp "),
        good_row(1, channel="card_present", entry_mode="2", label="legitimate", scenario="ignored"),
        good_row(2, channel="6", entry_mode="Wallet", label="yes", scenario=""),
        good_row(3, channel="", entry_mode="", label="", merchant_country="", mcc="", latitude="", longitude=""),
    ])  # fmt: skip
    p = read_payments(path).payments
    assert p.channel.tolist() == [pb.CHANNEL_ECOMMERCE, pb.CHANNEL_CARD_PRESENT, pb.CHANNEL_ATM, 0]
    assert p.entry_mode.tolist() == [pb.ENTRY_MODE_CARD_ON_FILE, pb.ENTRY_MODE_CONTACTLESS, pb.ENTRY_MODE_WALLET, 0]
    assert p.is_fraud.tolist() == [True, False, True, False]
    assert p.scenario.tolist() == ["card_testing", "", "", ""]
    assert p.merchant_country.tolist() == ["GB", "DE", "DE", ""] and p.currency[0] == "GBP"
    assert p.mcc[3] == 0 and np.isnan(p.latitude[3]) and np.isnan(p.longitude[3])


# --- bad rows ---------------------------------------------------------------------------------

BAD_ROWS: list[tuple[dict[str, str], str, str]] = [
    ({"timestamp": "yesterday"}, "timestamp", "not a time (ISO-8601 or epoch seconds)"),
    ({"timestamp": "2024-02-30T00:00:00Z"}, "timestamp", "not a time (ISO-8601 or epoch seconds)"),
    ({"timestamp": "1989-12-31T23:59:59Z"}, "timestamp", "before 1990 or after 2100"),
    ({"timestamp": "4102444800"}, "timestamp", "before 1990 or after 2100"),
    ({"timestamp": ""}, "timestamp", "missing"),
    ({"amount": "12,34"}, "amount", "not a number"),
    ({"amount": "nan"}, "amount", "not a number"),
    ({"amount": "-0.01"}, "amount", "negative"),
    ({"amount": "1e20"}, "amount", "above 10^15 minor units"),
    ({"amount": "10000000000000.01"}, "amount", "above 10^15 minor units"),
    ({"amount": ""}, "amount", "missing"),
    ({"transaction_id": " "}, "transaction_id", "missing"),
    ({"transaction_id": "x" * 129}, "transaction_id", "longer than 128 characters"),
    ({"card": ""}, "card", "missing"),
    ({"card_bin": "41"}, "card_bin", "not 6 to 8 digits"),
    ({"card_last4": "11111"}, "card_last4", "not 4 digits"),
    ({"currency": "XYZ"}, "currency", "not an ISO-4217 currency"),
    ({"mcc": "54111"}, "mcc", "not a whole number from 0 to 9999"),
    ({"mcc": "-1"}, "mcc", "not a whole number from 0 to 9999"),
    ({"merchant_country": "DEU"}, "merchant_country", "not two ASCII letters"),
    ({"latitude": "95"}, "latitude", "outside [-90, 90]"),
    ({"longitude": "north"}, "longitude", "not a number"),
    ({"latitude": ""}, "longitude", "given without latitude"),
    ({"channel": "teleport"}, "channel", "unknown channel (expected an enum name or number)"),
    ({"entry_mode": "9"}, "entry_mode", "unknown entry mode (expected an enum name or number)"),
    ({"label": "maybe"}, "label", "not a label (true/false, 1/0, yes/no, fraud/legit, chargeback)"),
    ({"label": "1", "label_time": "2023-12-31T00:00:00Z"}, "label_time", "before the payment's own time"),
    ({"label_time": "soon"}, "label_time", "not a time (ISO-8601 or epoch seconds)"),
    ({"device": "d" * 200}, "device", "longer than 128 characters"),
    ({"transaction_id": "tx-0"}, "transaction_id", "duplicate of an earlier row"),
]


def test_every_kind_of_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    rows = [good_row(i) for i in range(40)]
    rows[3][HEADER.index("customer")] = "two\nlines"  # pushes every later row one line down
    rows[7][HEADER.index("amount")] = "12.345"  # rounded, not bad
    rows += [good_row(100 + k, **changes) for k, (changes, _, _) in enumerate(BAD_ROWS)]
    path = tmp_path / "mixed.csv"
    lines = write_csv(path, rows)
    text = path.read_text()
    # a blank line and a row with too few columns, both after the last row
    path.write_text(text + "\n" + "a,b,c\n")
    result = read_payments(path, options=ImportOptions(max_reported_rows=100))
    expected = {BadRow(lines[40 + k], name, reason) for k, (_, name, reason) in enumerate(BAD_ROWS)}
    expected.add(BadRow(text.count("\n") + 2, "row", "a different number of columns from the header"))
    assert set(result.report.examples) == expected
    assert len(result.report.examples) == len(expected)
    assert result.report.rows_read == 40 + len(BAD_ROWS) + 1
    assert result.report.rows_imported == len(result.payments) == 40
    assert sorted(result.payments.transaction_id.tolist()) == sorted(f"tx-{i}" for i in range(40))
    assert "two\nlines" in result.payments.customer_id.tolist()
    assert result.report.counts[("timestamp", "not a time (ISO-8601 or epoch seconds)")] == 2
    assert "1 blank lines were skipped" in result.report.warnings
    summary = result.report.summary()
    assert f"mixed.csv: imported 40 of {40 + len(BAD_ROWS) + 1} rows" in summary
    assert f"timestamp: before 1990 or after 2100: 2 rows (line {lines[42]}, {lines[43]})" in summary


def test_examples_stop_at_max_reported_rows_but_counts_do_not(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    lines = write_csv(path, [good_row(i, amount="x" if i % 2 else "1") for i in range(30)])
    report = read_payments(path, options=ImportOptions(max_reported_rows=3)).report
    assert report.examples == tuple(BadRow(lines[i], "amount", "not a number") for i in (1, 3, 5))
    assert report.counts == {("amount", "not a number"): 15}


def test_duplicate_ids_keep_the_first_good_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    lines = write_csv(path, [good_row(0, amount="1"), good_row(1, transaction_id="tx-0", amount="2"),
                             good_row(2, transaction_id="tx-9", amount="bad"), good_row(3, transaction_id="tx-9",
                             amount="3"), good_row(4, transaction_id="tx-0", amount="4")])
    result = read_payments(path, options=ImportOptions(max_bad_fraction=0.9))
    assert result.payments.transaction_id.tolist() == ["tx-0", "tx-9"]
    assert result.payments.amount_minor.tolist() == [100, 300]
    duplicates = [e.row for e in result.report.examples if e.reason == "duplicate of an earlier row"]
    assert duplicates == [lines[1], lines[4]]


def test_a_mostly_bad_file_fails_with_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    lines = write_csv(path, [good_row(i, timestamp="garbage" if i < 1200 else f"{T0 + i}") for i in range(1600)])
    with pytest.raises(ValidationError) as caught:
        read_payments(path)
    message = str(caught.value)
    assert caught.value.field == str(path)
    assert "75% of 1,600 rows could not be read" in message
    assert f"timestamp: not a time (ISO-8601 or epoch seconds) (1,200 rows, e.g. line {lines[0]})" in message
    assert "Traceback" not in message and "pyarrow" not in message
    assert len(read_payments(path, options=ImportOptions(max_bad_fraction=0.8)).payments) == 400


def test_no_good_row_fails_even_when_bad_rows_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    write_csv(path, [good_row(0, amount="-1")])
    with pytest.raises(ValidationError) as caught:
        read_payments(path, options=ImportOptions(max_bad_fraction=1.0))
    assert "all of 1 rows could not be read: amount: negative (1 rows, e.g. line 2)" in str(caught.value)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("junk.csv", bytes(range(256)) * 8, "is not UTF-8 text"),
    ("empty.csv", b"", "is empty"),
    ("blank.csv", b"\n\n", "has no header row"),
    ("header.csv", ",".join(HEADER).encode() + b"\n", "has no data rows"),
    ("junk.csv.gz", b"\x1f\x8b not really gzip", "gzip"),
    ("junk.parquet", b"PAR1 not really parquet", "is not a readable Parquet file"),
    ("empty.pq", b"", "is not a readable Parquet file"),
    ("quotes.csv", b'transaction_id,timestamp,amount,card\n"unterminated,1,2,3\n', "a different number of columns"),
    ("misshapen.csv.gz", gzip.compress(b"a,b\n1,2,3\n\xff\n"), "is not UTF-8 text"),
    ("table.xlsx", b"whatever", "unknown file type"),
])  # fmt: skip
def test_unreadable_files_fail_with_a_clear_message(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValidationError) as caught:
        read_payments(path)
    assert caught.value.field == str(path) and message in caught.value.message


def test_a_missing_file_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be opened"):
        read_payments(tmp_path / "nowhere.csv")


def test_duplicate_header_names_are_refused_only_when_mapped(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    write_csv(path, [["t", "2024-01-01", "1", "c", "x", "y"]],
              header=("transaction_id", "timestamp", "amount", "card", "note", "note"))
    assert len(read_payments(path).payments) == 1
    with pytest.raises(ValidationError, match="column 'note' appears 2 times"):
        read_payments(path, ColumnMapping.parse("transaction_id=transaction_id,timestamp=timestamp,amount=amount,"
                                                "card=card,merchant=note"))


# --- raw card numbers -------------------------------------------------------------------------


def test_raw_pans_are_tokenized_and_kept_nowhere(tmp_path: Path) -> None:
    path = tmp_path / "pans.csv"
    pans = [VISA, "4111 1111 1111 1111", "5500-0055-5555-5559", AMEX]
    rows = [good_row(i, card=pan, card_bin="", card_last4="") for i, pan in enumerate(pans)]
    rows.append(good_row(9, card="4111111111111112", card_bin="", card_last4=""))  # fails Luhn: a plain token
    write_csv(path, rows)
    result = read_payments(path, options=ImportOptions(pan_key=KEY))
    p = result.payments
    expect = [PanTokenizer(KEY).tokenize(pan) for pan in pans]
    assert p.card_token.tolist() == [ref.token for ref in expect] + ["4111111111111112"]
    assert p.card_token[0] == p.card_token[1]
    assert p.card_bin.tolist() == ["411111", "411111", "550000", "378282", ""]
    assert p.card_last4.tolist() == ["1111", "1111", "5559", "0005", ""]
    text = all_text(result)
    assert pan_runs(text) == []
    assert not any(pan in text or re.sub(r"[ -]", "", pan) in text for pan in pans)
    assert "5 rows held raw card numbers" not in text and "4 rows held raw card numbers" in text


def test_pans_never_reach_an_error_message(tmp_path: Path) -> None:
    path = tmp_path / "pans.csv"
    rows = [good_row(i, card=VISA, amount="oops", merchant=MASTERCARD) for i in range(5)]
    write_csv(path, rows, header=(*HEADER[:-1], f"x{AMEX}"))
    with pytest.raises(ValidationError) as caught:
        read_payments(path, options=ImportOptions(pan_key=KEY))
    assert pan_runs(str(caught.value)) == [] and VISA not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        read_payments(path, ColumnMapping.parse(f"transaction_id={VISA},timestamp=t,amount=a,card=c"))
    assert pan_runs(str(caught.value)) == [] and AMEX not in str(caught.value) and VISA not in str(caught.value)


def test_pans_use_the_servers_key_file_when_there_is_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "pan.key"
    key_file.write_bytes(bytes(range(32)))
    key_file.chmod(0o600)
    monkeypatch.setenv("FRAUDGUARD_PAN_KEY_FILE", str(key_file))
    path = tmp_path / "pans.csv"
    write_csv(path, [good_row(0, card=VISA)])
    result = read_payments(path)
    assert result.payments.card_token.tolist() == [PanTokenizer(bytes(range(32))).tokenize(VISA).token]
    assert not any("random key" in w for w in result.report.warnings)


def test_pans_without_any_key_get_a_random_one_and_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "pans.csv"
    write_csv(path, [good_row(0, card=VISA)])
    first, second = read_payments(path), read_payments(path)
    assert first.payments.card_token[0].startswith("pan_")
    assert first.payments.card_token[0] != second.payments.card_token[0]
    assert any("tokens will not match the server's" in w for w in first.report.warnings)
    assert not any("random key" in w for w in read_payments(path, options=ImportOptions(pan_key=KEY)).report.warnings)


# --- anything at all in a cell ----------------------------------------------------------------

PLAUSIBLE: dict[str, list[str]] = {
    "transaction_id": ["t1", "t2", "t1", " ", "x" * 128, "x" * 129],
    "timestamp": ["2024-01-01T00:00:00Z", "1990-01-01T00:00:00Z", "1989-12-31T23:59:59Z", "2099-12-31T23:59:59Z",
                  "2100-01-01T00:00:00Z", "631152000", "4102444799.9", "1e9", "-1", "2024-02-29", "0001-01-01"],
    "amount": ["0", "1e15", "1e-300", "999999999999.995", "10000000000000.005", "-0", "-1e-9", "inf", "1.5e3"],
    "currency": ["USD", "jpy", "XXX", "KWD", ""],
    "card": [VISA, "4111 1111 1111 1111", "tok", "", "1234567890123"],
    "card_bin": ["411111", "", "4111111111111111"],
    "card_last4": ["1111", "", "4111111111111111"],
    "mcc": ["0", "9999", "10000", "-0", "5411.0", "0x10"],
    "merchant_country": ["DE", "de", "ÄB", "D"],
    "latitude": ["90", "-90.0", "90.0000001", "nan", "inf", "", "0"],
    "longitude": ["180", "-180", "180.1", "", "1e400"],
    "channel": ["ecommerce", "7", "-1", "CHANNEL_ATM", "2.0"],
    "entry_mode": ["chip", "6", "entry_mode_wallet", "Unspecified"],
    "label": ["1", "true", "FRAUD", "legit", "2"],
    "label_time": ["", "2024-01-02T00:00:00Z", "1990-01-01T00:00:00Z", "2101-01-01T00:00:00Z"],
}


def cell(name: str) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=24), st.sampled_from(PLAUSIBLE.get(name, ["x"])))


ROWS = st.lists(st.tuples(*(cell(name) for name in HEADER)), min_size=1, max_size=6)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ROWS)
def test_arbitrary_cells_give_valid_payments_or_a_validation_error(rows: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.csv"
        write_csv(path, rows)
        try:
            result = read_payments(path, options=ImportOptions(max_bad_fraction=1.0, pan_key=KEY))
        except ValidationError as exc:
            assert pan_runs(str(exc)) == []
            return
    assert_in_range(result)


def assert_in_range(result: ImportedPayments) -> None:
    p = result.payments
    assert 0 < len(p) == result.report.rows_imported <= result.report.rows_read
    assert ((p.event_time >= MIN_TIME) & (p.event_time < MAX_TIME)).all() and (np.diff(p.event_time) >= 0).all()
    assert ((p.amount_minor >= 0) & (p.amount_minor <= 10**15)).all()
    assert set(p.currency.tolist()) <= set(EXPONENTS)
    assert ((p.mcc >= 0) & (p.mcc <= 9999)).all()
    assert (np.isnan(p.latitude) == np.isnan(p.longitude)).all()
    located = ~np.isnan(p.latitude)
    assert (np.abs(p.latitude[located]) <= 90).all() and (np.abs(p.longitude[located]) <= 180).all()
    assert set(p.channel.tolist()) <= set(pb.Channel.values())
    assert set(p.entry_mode.tolist()) <= set(pb.EntryMode.values())
    assert (p.label_time[~p.is_fraud] == math.inf).all() and (p.scenario[~p.is_fraud] == "").all()
    assert (np.isfinite(p.label_time[p.is_fraud]) & (p.label_time[p.is_fraud] >= p.event_time[p.is_fraud])).all()
    ids = p.transaction_id.tolist()
    assert len(set(ids)) == len(ids) and all(0 < len(i) <= 128 for i in ids)
    assert all(p.card_token.tolist()) and all(len(c) <= 128 for c in p.card_token.tolist())
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in p.merchant_country.tolist() if c)
    assert all(re.fullmatch(r"\d{6,8}", b) for b in p.card_bin.tolist() if b)
    assert pan_runs(all_text(result)) == []


def test_canonical_fields_are_what_write_payments_writes() -> None:
    assert CANONICAL_FIELDS == REQUIRED_FIELDS + OPTIONAL_FIELDS and len(set(CANONICAL_FIELDS)) == 20
    assert sorted(HEADER) == sorted(CANONICAL_FIELDS)
