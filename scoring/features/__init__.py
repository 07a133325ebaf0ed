"""Feature engineering shared by the scoring server and the trainer (train/serve parity)."""

from scoring.features.engine import (
    BYTES_PER_CARD,
    BYTES_PER_ENTITY,
    EngineCapacity,
    EngineStats,
    FeatureEngine,
    SnapshotError,
)
from scoring.features.schema import FEATURE_NAMES, FEATURES, N_FEATURES, SCHEMA_VERSION

__all__ = [
    "BYTES_PER_CARD",
    "BYTES_PER_ENTITY",
    "FEATURES",
    "FEATURE_NAMES",
    "N_FEATURES",
    "SCHEMA_VERSION",
    "EngineCapacity",
    "EngineStats",
    "FeatureEngine",
    "SnapshotError",
]
