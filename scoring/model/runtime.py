"""The model runtime: P(fraud) from onnxruntime, reason codes from the contribution kernel.

One ``predict`` of a single row costs about ten microseconds, so the call itself is trimmed:

- the ONNX graph is cut down to what the probability output needs (the exporter's label
  output and its ``Cast`` run on every call otherwise) and a multiplication by an exact
  1.0 becomes an ``Identity`` that onnxruntime removes — the probabilities are unchanged
  bit for bit (~1.5 µs per call);
- the native session's ``run`` is called directly, without the Python-side checks that
  ``InferenceSession.run`` makes before calling it (~2.5 µs per call; all of them are about
  inputs we always give in the same, valid form). That attribute is not public API: if an
  onnxruntime version lacks it, ``InferenceSession.run`` is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_native

from fraudguard.errors import BundleError
from scoring.model.bundle import ModelBundle
from scoring.model.contributions import ContributionKernel
from scoring.model.trees import TreeArrays

# What onnxruntime raises for a model it cannot read or run (its own classes derive from Exception only).
_ORT_LOAD_ERRORS = (OSError, RuntimeError, ValueError, ort_native.Fail, ort_native.InvalidArgument,
                    ort_native.InvalidGraph, ort_native.InvalidProtobuf, ort_native.NoModel, ort_native.NoSuchFile,
                    ort_native.NotImplemented, ort_native.RuntimeException, ort_native.EPFail)

# (output names, {input name: rows}, run options) -> outputs: the signature of InferenceSession.run
Run = Callable[[list[str], dict[str, npt.NDArray[np.float32]], None], list[npt.NDArray[np.float32]]]


class ModelRuntime:
    """One bundle loaded for scoring. Immutable after ``load``: safe to call while another is swapped in,
    and from several threads at once."""

    __slots__ = ("_input_name", "_kernel", "_n_features", "_output_names", "_run", "_session")

    def __init__(self, session: ort.InferenceSession, kernel: ContributionKernel) -> None:
        """Prefer ``load``; this checks that the ONNX model and the trees fit together."""
        self._session = session
        self._kernel = kernel
        self._n_features = kernel.n_features
        self._input_name, probabilities = _resolve_io(session, kernel.n_features)
        self._output_names = [probabilities]
        self._run = _unchecked_run(session)

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
            full = ort.InferenceSession(str(bundle.onnx_path), options, providers=["CPUExecutionProvider"])
            _, probabilities = _resolve_io(full, trees.n_features)
            scoring_graph = _scoring_graph(onnx.load(str(bundle.onnx_path)), probabilities)
            session = ort.InferenceSession(scoring_graph, options, providers=["CPUExecutionProvider"])
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
        probabilities = self._run(self._output_names, {self._input_name: rows}, None)[0]
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


def _unchecked_run(session: Any) -> Run:
    """``session.run`` minus the wrapper's checks: the native session's own ``run`` (which the wrapper calls,
    with the same arguments, once its checks pass), or ``session.run`` itself where the wrapper is laid out
    otherwise."""
    native_run = getattr(getattr(session, "_sess", None), "run", None)
    run: Run = native_run if callable(native_run) else session.run
    return run


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


def _scoring_graph(model: onnx.ModelProto, output: str) -> bytes:
    """``model`` serialised with only ``output`` and the nodes it needs, and a final multiplication by an exact
    1.0 turned into ``Identity`` (which onnxruntime's optimiser removes): ``output`` is computed exactly as
    before. Graphs with subgraphs (If, Loop, Scan) are left whole: their bodies may read any outer value."""
    graph = model.graph
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for attr in node.attribute):
        return bytes(model.SerializeToString())
    needed, kept = {output}, []
    for node in reversed(graph.node):  # a valid graph lists producers before consumers
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    _replace(graph.node, reversed(kept))
    _replace(graph.output, [o for o in graph.output if o.name == output])
    _replace(graph.initializer, [init for init in graph.initializer if init.name in needed])
    _drop_multiply_by_one(graph, output)
    return bytes(model.SerializeToString())


def _replace(field: Any, items: Iterable[Any]) -> None:
    """Set a repeated protobuf field to ``items`` (which may be a view of it)."""
    items = list(items)
    del field[:]
    field.extend(items)


def _drop_multiply_by_one(graph: onnx.GraphProto, output: str) -> None:
    """Turn ``output = Mul(x, c)``, c a float scalar or one-element vector equal to 1.0, into ``Identity(x)``.
    Exact for every float; and since ``output`` is checked to be [n, 2] and c has rank <= 1, x has that
    shape too (onnxruntime also refuses to write a different shape into the preallocated output)."""
    ones = {init.name for init in graph.initializer if _is_exact_one(init)}
    for i, node in enumerate(graph.node):
        if (list(node.output) == [output] and node.op_type == "Mul" and node.domain in ("", "ai.onnx")
                and len(node.input) == 2 and ones.intersection(node.input)):
            x = node.input[1] if node.input[0] in ones else node.input[0]
            graph.node[i].CopyFrom(onnx.helper.make_node("Identity", [x], [output], name=node.name))
    used = {name for node in graph.node for name in node.input}
    _replace(graph.initializer, [init for init in graph.initializer if init.name in used])


def _is_exact_one(initializer: onnx.TensorProto) -> bool:
    """A float scalar or one-element vector holding exactly 1.0."""
    if initializer.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE) or len(initializer.dims) > 1:
        return False
    values = numpy_helper.to_array(initializer)
    return bool(values.size == 1 and values.reshape(-1)[0] == 1.0)
