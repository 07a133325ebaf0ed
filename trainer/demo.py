"""The demo bundle: synthetic payments through the same pipeline as ``fraudguard train``, promoted.

Small enough to build in seconds on a laptop (``make run`` builds it on a new machine and
the test suite builds one per session), big enough that every fraud scenario is learnt.
"""

from __future__ import annotations

from pathlib import Path

from scoring.model import ModelBundle
from trainer.fields import ALL_OPTIONAL_FIELDS
from trainer.pipeline import TrainConfig, TrainingSource, train_bundle
from trainer.search import SearchBudget
from trainer.synthetic import SyntheticConfig, generate_payments
from trainer.train import TrainingParams

DEMO_TRANSACTIONS = 60_000
DEMO_DAYS = 45


def build_demo_bundle(
    models_dir: Path, seed: int = 7, n_transactions: int = DEMO_TRANSACTIONS, progress: bool = False,
    report: bool = True, promote: bool = True,
) -> ModelBundle:
    """Generate, replay, train (default hyper-parameters, no search), export, check, calibrate; write the
    bundle into ``models_dir`` and (unless ``promote`` is False) promote it — without an audit entry: the
    ``fraudguard models demo`` command builds unpromoted and promotes through the audited path.

    ``BundleError`` if the ONNX export disagrees with the booster or the bundle cannot be written;
    ``ValidationError`` if there are too few payments to train on.
    """
    payments = generate_payments(SyntheticConfig(n_transactions=n_transactions, seed=seed, days=DEMO_DAYS))
    source = TrainingSource(payments, ALL_OPTIONAL_FIELDS | {"label"},
                            f"synthetic data ({n_transactions} payments over {DEMO_DAYS} days, seed {seed})")
    config = TrainConfig(params=TrainingParams(seed=seed), budget=SearchBudget(max_trials=1),
                         version_prefix="demo", description="demo model", promote=promote, progress=progress,
                         report=report)  # fmt: skip
    return train_bundle(source, models_dir, config).bundle
