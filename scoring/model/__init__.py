"""The model: bundles on disk, the onnxruntime runtime with reason codes, and hot swapping."""

from scoring.model.bundle import BundleManifest, ModelBundle, Thresholds, load_bundle, write_bundle
from scoring.model.registry import PROMOTED_FILE, list_bundles, load_promoted, promote, promoted_version
from scoring.model.runtime import ModelRuntime
from scoring.model.trees import TreeArrays, trees_from_booster
from scoring.model.watcher import ActiveModel, ModelWatcher

__all__ = [
    "PROMOTED_FILE",
    "ActiveModel",
    "BundleManifest",
    "ModelBundle",
    "ModelRuntime",
    "ModelWatcher",
    "Thresholds",
    "TreeArrays",
    "list_bundles",
    "load_bundle",
    "load_promoted",
    "promote",
    "promoted_version",
    "trees_from_booster",
    "write_bundle",
]
