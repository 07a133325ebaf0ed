"""Which features a data source can support: a feature that needs a field the source lacks is left out.

An imported file may have only the four required columns (transaction id, time, amount,
card). The server would compute, say, ``device_count_1h`` as 0 for every such payment; a
model trained on those constant zeros learns nothing from them, but a model that *could*
split on them would be trusting junk. So the trainer masks every feature whose inputs the
source does not provide (its column becomes NaN, which LightGBM cannot split on) and the
bundle records what was left out and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from scoring.features import FEATURE_NAMES

# The optional source fields (canonical names of ``trainer.files``) each feature needs. Features
# not listed need only the required fields (transaction id, time, amount, card).
_NEEDS: dict[str, tuple[str, ...]] = {
    "channel": ("channel",),
    "entry_mode": ("entry_mode",),
    "mcc": ("mcc",),
    "card_new_device": ("device",),
    "card_new_country": ("merchant_country",),
    "card_new_merchant": ("merchant",),
    "card_distinct_devices": ("device",),
    "geo_distance_km": ("latitude", "longitude"),
    "geo_speed_kmh": ("latitude", "longitude"),
    "impossible_travel": ("latitude", "longitude"),
    "has_location": ("latitude", "longitude"),
    "customer_count_1h": ("customer",),
    "customer_count_24h": ("customer",),
    "customer_amount_24h": ("customer",),
    "customer_amount_zscore": ("customer",),
    "customer_distinct_cards": ("customer",),
    "device_count_1h": ("device",),
    "device_count_24h": ("device",),
    "device_distinct_cards": ("device",),
    "ip_count_1h": ("ip",),
    "ip_count_24h": ("ip",),
    "ip_distinct_cards": ("ip",),
    "merchant_count_1h": ("merchant",),
    "merchant_count_24h": ("merchant",),
    "merchant_amount_zscore": ("merchant",),
    "merchant_fraud_rate": ("merchant", "label"),
    "device_fraud_rate": ("device", "label"),
    "has_device": ("device",),
    "has_ip": ("ip",),
}
FEATURE_NEEDS: Mapping[str, tuple[str, ...]] = MappingProxyType({name: _NEEDS.get(name, ()) for name in FEATURE_NAMES})
ALL_OPTIONAL_FIELDS = frozenset(field for needs in _NEEDS.values() for field in needs)


@dataclass(frozen=True, slots=True)
class FeatureSelection:
    """The features a model may use, and for every other one the fields it lacked."""

    used: tuple[str, ...]
    excluded: Mapping[str, tuple[str, ...]]  # feature -> the missing fields it needs

    @classmethod
    def for_fields(cls, provided: frozenset[str]) -> FeatureSelection:
        """Every feature whose needed fields are all in ``provided``."""
        excluded = {name: tuple(f for f in needs if f not in provided)
                    for name, needs in FEATURE_NEEDS.items() if not set(needs) <= provided}  # fmt: skip
        used = tuple(name for name in FEATURE_NAMES if name not in excluded)
        return cls(used, MappingProxyType(excluded))

    @classmethod
    def everything(cls) -> FeatureSelection:
        return cls.for_fields(ALL_OPTIONAL_FIELDS)

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """True for each used feature, in the kernels' order."""
        used = set(self.used)
        return np.array([name in used for name in FEATURE_NAMES], np.bool_)

    def apply(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``x`` with every excluded feature's column set to NaN (in place; returns ``x``)."""
        x[:, ~self.mask] = np.nan
        return x

    def to_dict(self) -> dict[str, object]:
        return {"used": list(self.used), "excluded": {k: list(v) for k, v in self.excluded.items()}}
