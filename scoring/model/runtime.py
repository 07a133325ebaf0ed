"""The model runtime: P(fraud) from onnxruntime, reason codes from the contribution kernel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from fraudguard.errors import BundleError
from scoring.model.bundle import ModelBundle
from scoring.model.contributions import ContributionKernel
from scoring.model.trees import TreeArrays

# What onnxruntime raises for a model it cannot read or run (its own classes derive from Exception only).
_ORT_LOAD_ERRORS = (OSError, RuntimeError, ValueError, ort_errors.Fail, ort_errors.InvalidArgument,
                    ort_errors.InvalidGraph, ort_errors.InvalidProtobuf, ort_errors.NoModel, ort_errors.NoSuchFile,
                    ort_errors.NotImplemented, ort_errors.RuntimeException, ort_errors.EPFail)


class ModelRuntime:
    """One bundle loaded for scoring. Immutable after ``load``: safe to call while another is swapped in."""

    __slots__ = ("_input_name", "_kernel", "_n_features", "_output_names", "_session")

    def __init__(self, session: ort.InferenceSession, kernel: ContributionKernel) -> None:
        """Prefer ``load``; this checks that the ONNX model and the trees fit together."""
        self._session = session
        self._kernel = kernel
        self._n_features = kernel.n_features
        self._input_name, probabilities = _resolve_io(session, kernel.n_features)
        self._output_names = [probabilities]

    @classmethod
    def load(cls, bundle: ModelBundle, threads: int = 1) -> ModelRuntime:
        """Open the bundle's ONNX model (tuned for latency) and its trees; ``BundleError`` if either is bad."""
        trees = TreeArrays.load(bundle.trees_path)
        if trees.n_features != len(bundle.manifest.feature_names):
            raise BundleError(f"{bundle.trees_path}: trees use {trees.n_features} features, the manifest names "
                              f"{len(bundle.manifest.feature_names)}")
        if trees.uses_zero_as_missing:
            raise BundleError(f"{bundle.trees_path}: trees treat zero as missing, which the ONNX model does not")
        options = _session_options(threads)
        try:
            session = ort.InferenceSession(str(bundle.onnx_path), options, providers=["CPUExecutionProvider"])
        except _ORT_LOAD_ERRORS as exc:
            raise BundleError(f"cannot load ONNX model {bundle.onnx_path}: {exc}") from exc
        return cls(session, ContributionKernel.from_trees(trees))

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def expected_value(self) -> float:
        """The raw score (log-odds) before any feature is looked at; contributions add up from here."""
        return self._kernel.expected_value

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """P(fraud) for each row of ``x`` [n, n_features]; shape [n]."""
        rows = self._rows(x)
        probabilities: npt.NDArray[np.float32] = self._session.run(self._output_names, {self._input_name: rows})[0]
        return probabilities[:, 1].astype(np.float64)

    def top_reasons(self, x: npt.NDArray[np.float32],
                    k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Per row, the ``k`` features pushing hardest toward fraud, strongest first, and their log-odds
        contributions ([n, k] each). Rows with fewer than ``k`` positive contributions are filled with the
        next largest; ties go to the lower feature index."""
        return self._kernel.top(x, k)

    def contributions(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Every feature's log-odds contribution [n, n_features]; rows sum to raw score - ``expected_value``."""
        return self._kernel.contributions(x)

    def _rows(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if x.ndim != 2 or x.shape[1] != self._n_features:
            raise ValueError(f"expected features of shape [n, {self._n_features}], got {list(x.shape)}")
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        return x


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """The bundle being served, its runtime, and when it was loaded."""

    bundle: ModelBundle
    runtime: ModelRuntime
    loaded_at: datetime


def _session_options(threads: int) -> ort.SessionOptions:
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers buy little for tree ensembles and steal the cores the event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


def _resolve_io(session: ort.InferenceSession, n_features: int) -> tuple[str, str]:
    """The input name and the name of the [n, 2] probability output, checked against ``n_features``."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise BundleError(f"the ONNX model must take one float tensor, got "
                          f"{[(i.name, i.type) for i in inputs]}")
    shape = inputs[0].shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != n_features):
        raise BundleError(f"the ONNX model takes input of shape {shape}, expected [n, {n_features}]")
    candidates = [o.name for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2
                  and (not isinstance(o.shape[1], int) or o.shape[1] == 2)]
    if len(candidates) != 1:
        raise BundleError("the ONNX model must have exactly one [n, 2] float probability output (export it with "
                          f"zipmap=False), got {[(o.name, o.type, o.shape) for o in session.get_outputs()]}")
    return inputs[0].name, candidates[0]
