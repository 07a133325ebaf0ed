"""``write_payments``: ``Payments`` to a CSV, csv.gz or Parquet file with the canonical column names."""

from __future__ import annotations

import gzip
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from fraudguard.currencies import EXPONENTS
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from trainer.files.arrays import F64, I32, I64, S
from trainer.files.raw import FileKind, _file_kind
from trainer.payments import Payments


def write_payments(payments: Payments, path: str | os.PathLike[str]) -> None:
    """Write ``payments`` with canonical column names to a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.

    CSV holds text: ISO-8601 UTC times to the second, amounts in major units exact to the
    currency's exponent, enum names, label 1/0, empty cells for no location and for labels
    that never arrive. Parquet holds timestamp[s, UTC] times, decimal128(23, 4) amounts,
    float64 coordinates and a bool label. ``label_time`` is floored to whole seconds. The
    file appears whole or not at all (written aside, then renamed).
    """
    file = Path(path)
    kind = _file_kind(file)
    table = _csv_table(payments) if kind == "csv" else _parquet_table(payments)
    compress = file.name.lower().endswith(".gz")
    _write_atomically(file, lambda tmp: _write_table(table, tmp, kind, compress))


_CSV_ORDER = ("transaction_id", "timestamp", "amount", "currency", "card", "card_bin", "card_last4", "customer",
              "merchant", "mcc", "merchant_country", "device", "ip", "latitude", "longitude", "channel",
              "entry_mode", "label", "scenario", "label_time")


def _common_columns(p: Payments) -> dict[str, pa.Array]:
    """The columns written the same way to CSV and Parquet."""
    text = _arrow_text
    return {
        "transaction_id": text(p.transaction_id), "currency": text(p.currency), "card": text(p.card_token),
        "card_bin": text(p.card_bin), "card_last4": text(p.card_last4), "customer": text(p.customer_id),
        "merchant": text(p.merchant_id), "merchant_country": text(p.merchant_country), "device": text(p.device_id),
        "ip": text(p.ip_address), "channel": _enum_text(p.channel, pb.Channel.items()),
        "entry_mode": _enum_text(p.entry_mode, pb.EntryMode.items()), "scenario": text(p.scenario),
    }  # fmt: skip


def _arrow_text(values: S) -> pa.Array:
    """NumPy ``str_`` as Arrow text. ASCII goes straight to the buffers: several times faster than ``pa.array``."""
    width = max(1, values.dtype.itemsize // 4)
    codes = np.ascontiguousarray(values, dtype=f"U{width}").view(np.uint32).reshape(len(values), width)
    lengths = np.char.str_len(values).astype(np.int64)
    if lengths.sum() >= 2**31 or (codes.size and codes.max() >= 0x80):
        return pa.array(values, pa.string())
    chars = codes[np.arange(width) < lengths[:, None]].astype(np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(chars))


def _csv_table(p: Payments) -> pa.Table:
    columns = _common_columns(p) | {
        "timestamp": _iso_seconds(p.event_time),
        "amount": _major_text(p.amount_minor, p.currency),
        "mcc": pc.cast(pa.array(p.mcc), pa.string()),
        "latitude": _float_text(p.latitude),
        "longitude": _float_text(p.longitude),
        "label": pa.array(np.where(p.is_fraud, "1", "0")),
        "label_time": _label_time_text(p.label_time),
    }
    return pa.table({name: columns[name] for name in _CSV_ORDER})


def _parquet_table(p: Payments) -> pa.Table:
    finite = np.isfinite(p.label_time)
    columns = _common_columns(p) | {
        "timestamp": pa.array(p.event_time, pa.timestamp("s", "UTC")),
        "amount": pc.cast(_major_text(p.amount_minor, p.currency), pa.decimal128(23, 4)),
        "mcc": pa.array(p.mcc, pa.int32()),
        "latitude": pa.array(p.latitude, pa.float64(), mask=np.isnan(p.latitude)),
        "longitude": pa.array(p.longitude, pa.float64(), mask=np.isnan(p.longitude)),
        "label": pa.array(p.is_fraud, pa.bool_()),
        "label_time": pa.array(np.floor(np.where(finite, p.label_time, 0.0)).astype(np.int64),
                               pa.timestamp("s", "UTC"), mask=~finite),
    }
    return pa.table({name: columns[name] for name in _CSV_ORDER})


def _iso_seconds(seconds: I64) -> pa.Array:
    """'YYYY-MM-DDTHH:MM:SSZ' per epoch second."""
    text = pc.cast(pa.array(seconds, pa.timestamp("s")), pa.string())  # 'YYYY-MM-DD HH:MM:SS'
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, start=10, stop=11, replacement="T"), "Z", "")


def _label_time_text(label_time: F64) -> pa.Array:
    finite = np.isfinite(label_time)
    text = _iso_seconds(np.floor(np.where(finite, label_time, 0.0)).astype(np.int64))
    return pc.if_else(pa.array(finite), text, "")


def _float_text(values: F64) -> pa.Array:
    """Shortest text that reads back to the same float64; empty for NaN."""
    return pc.if_else(pa.array(np.isnan(values)), "", pc.cast(pa.array(values, pa.float64()), pa.string()))


def _major_text(minor: I64, currency: S) -> pa.Array:
    """Minor units as major-unit decimal text with exactly the currency's decimals: 1234 USD -> '12.34', JPY '1200'."""
    exponent = _exponents(currency)
    scale = 10**exponent
    magnitude = np.abs(minor)
    whole = pc.cast(pa.array(magnitude // scale), pa.string())
    # scale + remainder has a leading 1 and then exactly `exponent` digits: drop the 1
    fraction = pc.utf8_slice_codeunits(pc.cast(pa.array(scale + magnitude % scale), pa.string()), 1)
    text = pc.if_else(pa.array(exponent == 0), whole, pc.binary_join_element_wise(whole, fraction, "."))
    return pc.if_else(pa.array(minor < 0), pc.binary_join_element_wise("-", text, ""), text)


def _exponents(currency: S) -> I64:
    codes, inverse = np.unique(currency, return_inverse=True)
    unknown = [str(c) for c in codes if str(c) not in EXPONENTS]
    if unknown:
        raise ValidationError("currency", f"cannot write amounts in unknown currencies: {', '.join(unknown[:5])}")
    return np.array([EXPONENTS[str(c)] for c in codes], np.int64)[inverse.reshape(-1)]


def _enum_text(values: I32, items: Iterable[tuple[str, int]]) -> pa.Array:
    """Enum names per value (the number itself for a value the enum does not have)."""
    by_value = {v: k for k, v in items}
    names = pa.array([by_value.get(v, str(v)) for v in range(max(by_value) + 1)], pa.string())
    known = (values >= 0) & (values < len(names))
    text = pc.take(names, pa.array(np.where(known, values, 0)))
    return text if known.all() else pc.if_else(pa.array(known), text, pc.cast(pa.array(values), pa.string()))


def _write_table(table: pa.Table, path: Path, kind: FileKind, compress: bool) -> None:
    if kind == "parquet":
        pq.write_table(table, str(path))
    elif compress:  # Python's zlib at level 3: pyarrow's gzip stream is ~10x slower
        with gzip.open(path, "wb", compresslevel=3) as out:
            pv.write_csv(table, out)
    else:
        pv.write_csv(table, str(path))


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a hidden temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
