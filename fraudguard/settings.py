"""One typed, immutable settings object, read once at start from flags and ``FRAUDGUARD_*``.

Precedence: command-line flag > environment variable > default. Every field is
documented in its ``help`` metadata; ``fraudguard serve --help`` lists them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "FRAUDGUARD_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the scoring server, with its default."""

    listen: str = _opt("127.0.0.1:50051", "HOST:PORT the gRPC server listens on (port 0: any free port)")
    data_dir: Path = _opt(Path("data"), "directory for model bundles, entity-state snapshots and keys")
    tls_cert: Path | None = _opt(None, "PEM certificate chain; with --tls-key, serve TLS")
    tls_key: Path | None = _opt(None, "PEM private key for --tls-cert")
    tls_client_ca: Path | None = _opt(None, "PEM CA bundle; when set, clients must present a certificate it signed")
    max_cards: int = _opt(131_072, "entity-state capacity for cards (rounded up to a power of two)")
    max_entities: int = _opt(131_072, "entity-state capacity for customers, devices, IPs and merchants, each")
    max_recent_transactions: int = _opt(1_048_576, "transactions remembered for ReportOutcome look-ups")
    snapshot_interval_s: float = _opt(300.0, "seconds between periodic entity-state snapshots (0: only on shutdown)")
    model_poll_interval_s: float = _opt(
        1.0, "seconds between checks for a newly promoted model bundle (and for an edited rules file or list)"
    )
    rules_file: Path | None = _opt(
        None, "rules text (the rules language); default DATA_DIR/rules/active.rules when it exists; none: the model "
              "alone decides. Its '@NAME' lists are DATA_DIR/rules/lists/NAME.txt (see rules_lists_dir)"
    )
    bands: str = _opt("", "override the bundle's action thresholds, e.g. 'challenge=0.3,review=0.6,block=0.9'")
    top_reasons: int = _opt(3, "reasons returned per decision")
    max_batch: int = _opt(4096, "transactions accepted in one ScoreBatch/ScoreStream message")
    max_message_bytes: int = _opt(16 * 1024 * 1024, "largest gRPC message accepted or sent")
    shutdown_grace_s: float = _opt(10.0, "seconds SIGTERM waits for in-flight calls before cancelling them")
    log_level: str = _opt("INFO", "DEBUG, INFO, WARNING or ERROR")
    pan_key_file: Path | None = _opt(
        None, "32-byte key for PAN tokens (default: DATA_DIR/keys/pan.key, made on first start)"
    )
    onnx_threads: int = _opt(1, "onnxruntime intra-op threads (1 is best for latency)")
    database_url: str | None = _opt(
        None, "PostgreSQL (14+) DSN, e.g. postgresql://user@host:5432/db (unset: embedded server in DATA_DIR/postgres)"
    )
    record: bool = _opt(True, "store every decision in the database (false: score only, store nothing)")
    db_pool_size: int = _opt(4, "most connections this process opens to the database")
    db_connect_timeout_s: float = _opt(10.0, "seconds to wait for a database connection before giving up")
    partition_ahead_days: int = _opt(7, "daily partitions made ahead of today")
    retention_days: int = _opt(0, "days of transactions and decisions kept (older partitions dropped; 0: keep all)")
    record_batch_rows: int = _opt(2048, "decisions the writer stores per database round trip, at most")
    record_interval_s: float = _opt(0.005, "seconds the writer lets a batch gather")
    record_queue_rows: int = _opt(262_144, "decisions held in memory for the writer before the full policy applies")
    record_full_policy: str = _opt(
        "backpressure", "when the queue is full: 'backpressure' (calls wait) or 'reject' (calls get UNAVAILABLE)"
    )
    journal_max_bytes: int = _opt(1 << 30, "disk the decision journals may use (DATA_DIR/journal), in bytes")
    auth: bool = _opt(False, "require an API key ('authorization: Bearer KEY' metadata) on every call")
    personal_key_file: Path | None = _opt(
        None, "AES-256-GCM keys for personal fields (default: DATA_DIR/keys/personal.json, made on first start)"
    )

    metrics_listen: str = _opt("", "HOST:PORT where the scoring server serves Prometheus /metrics (empty: off)")
    # --- the REST gateway (fraudguard gateway) ---
    gateway_listen: str = _opt("127.0.0.1:8080", "HOST:PORT the REST gateway listens on (port 0: any free port)")
    scoring_target: str = _opt("127.0.0.1:50051", "HOST:PORT of the scoring server the gateway calls over gRPC")
    scoring_tls_ca: Path | None = _opt(None, "PEM CA that signed the scoring server's certificate (unset: plaintext)")
    scoring_api_key: str | None = _opt(
        None, "API key (scorer role) the gateway's own calls use when the scoring server requires keys; "
              "callers' keys are passed through as they are"
    )
    scoring_timeout_s: float = _opt(2.0, "deadline of each gateway call to the scoring server, in seconds")
    stripe_webhook_secret: str | None = _opt(
        None, "the Stripe endpoint's signing secret (whsec_...); unset: the webhook route answers 503"
    )
    stripe_tolerance_s: int = _opt(300, "oldest Stripe-Signature timestamp accepted, in seconds")
    stripe_workers: int = _opt(4, "Stripe events processed at once, off the request path")
    rate_limit_per_s: float = _opt(200.0, "requests per second each API key (or client address) may make (0: no limit)")
    rate_limit_burst: int = _opt(400, "requests a key may make at once before the rate limit applies")
    max_body_bytes: int = _opt(4 * 1024 * 1024, "largest request body the gateway reads, in bytes")

    def __post_init__(self) -> None:
        addresses = ("listen", "gateway_listen", "scoring_target",
                     *(("metrics_listen",) if self.metrics_listen else ()))
        for name in addresses:
            value = getattr(self, name)
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise SettingsError(f"{name}: expected HOST:PORT, got {value!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("tls_cert and tls_key: give both or neither")
        for name in (
            "max_cards",
            "max_entities",
            "max_recent_transactions",
            "top_reasons",
            "max_batch",
            "max_message_bytes",
            "onnx_threads",
            "db_pool_size",
            "record_batch_rows",
            "record_queue_rows",
            "stripe_workers",
            "max_body_bytes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("snapshot_interval_s", "model_poll_interval_s", "shutdown_grace_s", "partition_ahead_days",
                     "retention_days", "record_interval_s", "stripe_tolerance_s", "rate_limit_per_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name}: must not be negative, got {getattr(self, name)}")
        if self.rate_limit_per_s > 0 and self.rate_limit_burst < 1:
            raise SettingsError(f"rate_limit_burst: must be at least 1, got {self.rate_limit_burst}")
        if self.scoring_timeout_s <= 0:
            raise SettingsError(f"scoring_timeout_s: must be positive, got {self.scoring_timeout_s}")
        if self.db_connect_timeout_s <= 0:
            raise SettingsError(f"db_connect_timeout_s: must be positive, got {self.db_connect_timeout_s}")
        if self.retention_days and self.retention_days <= 1:
            raise SettingsError(f"retention_days: keep at least 2 days (or 0: all), got {self.retention_days}")
        if self.record_queue_rows < self.record_batch_rows:
            raise SettingsError(f"record_queue_rows: must be at least record_batch_rows ({self.record_batch_rows}), "
                                f"got {self.record_queue_rows}")
        if self.record_full_policy not in {"backpressure", "reject"}:
            raise SettingsError(f"record_full_policy: expected 'backpressure' or 'reject', got "
                                f"{self.record_full_policy!r}")
        if self.journal_max_bytes < 1 << 20:
            raise SettingsError(f"journal_max_bytes: at least 1 MiB (1048576), got {self.journal_max_bytes}")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"log_level: expected DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def rules_dir(self) -> Path:
        return self.data_dir / "rules"

    @property
    def rules_path(self) -> Path:
        """The rules text served: ``rules_file``, else ``DATA_DIR/rules/active.rules`` (used when it exists)."""
        return self.rules_file or self.rules_dir / "active.rules"

    @property
    def rules_lists_dir(self) -> Path:
        """The rules' named lists: ``@NAME`` is ``NAME.txt`` here, one value per line, ``#`` starts a comment; a
        file whose values are all numbers is a list of numbers (for ``mcc``, ``amount``), else of texts (ids,
        codes); a value in double quotes is always a text (``"12345"``). Edits are picked up like the rules."""
        return self.rules_dir / "lists"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def pan_key_path(self) -> Path:
        return self.pan_key_file or self.keys_dir / "pan.key"

    @property
    def personal_key_path(self) -> Path:
        return self.personal_key_file or self.keys_dir / "personal.json"

    @classmethod
    def from_sources(cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Build from parsed flags (``None`` values ignored) over ``FRAUDGUARD_*`` env."""
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            if raw is None:
                raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.name, hints[f.name], raw)
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, only: Sequence[str] | None = None,
                      exclude: Sequence[str] = ()) -> None:
        """Add a ``--flag`` per field (default ``None``, so env and defaults still apply)."""
        for f in dataclasses.fields(cls):
            if (only is not None and f.name not in only) or f.name in exclude:
                continue
            env = ENV_PREFIX + f.name.upper()
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=f"{f.metadata['help']} [env {env}; default {f.default}]",
            )


# the settings only the REST gateway reads (``fraudguard serve`` does not offer them as flags)
GATEWAY_ONLY: tuple[str, ...] = (
    "gateway_listen", "scoring_target", "scoring_tls_ca", "scoring_api_key", "scoring_timeout_s",
    "stripe_webhook_secret", "stripe_tolerance_s", "stripe_workers", "rate_limit_per_s", "rate_limit_burst",
    "max_body_bytes",
)
# what ``fraudguard gateway`` offers: its own settings and those of the database, keys and logs it shares
GATEWAY_SETTINGS: tuple[str, ...] = (
    *GATEWAY_ONLY, "data_dir", "database_url", "db_pool_size", "db_connect_timeout_s", "auth", "log_level",
    "partition_ahead_days", "retention_days", "shutdown_grace_s", "personal_key_file",
)


def _coerce(name: str, hint: Any, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if raw == "":
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw.replace("_", ""))
        if hint is float:
            return float(raw)
        if hint is Path:
            return Path(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{name}: cannot read {raw!r} as {getattr(hint, '__name__', hint)}") from exc
