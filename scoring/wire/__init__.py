"""Protobuf wire format for the scoring RPCs, in Numba: request bytes to column blocks, results to response bytes.

``decode_batch`` / ``decode_single`` validate and convert a whole request message in one kernel call and hand
only unusual transactions (a raw PAN, a bad field, unknown fields …) to the protobuf path in ``scoring.serde``,
so results are identical to it; ``encode_results`` / ``encode_score_response`` write the response messages
byte for byte as protobuf would.
"""

from scoring.wire.decode import DecodedRequest, decode_batch, decode_single
from scoring.wire.encode import encode_results, encode_score_response

__all__ = ["DecodedRequest", "decode_batch", "decode_single", "encode_results", "encode_score_response"]
