"""Generated gRPC/protobuf stubs of ``proto/fraud/v1``.

Committed; regenerate with ``python -m fraudguard.proto.generate`` (``make protos``).
"""
