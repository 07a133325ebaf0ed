"""NumPy array types for parsed columns, and Arrow arrays as NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]
S = npt.NDArray[np.str_]


def _np(values: pa.Array) -> npt.NDArray[Any]:
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _bools(values: pa.Array) -> B:
    return np.asarray(_np(values), np.bool_)


def _ints(values: pa.Array) -> I64:
    return np.asarray(_np(values), np.int64)
