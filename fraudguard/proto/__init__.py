"""Generated gRPC/protobuf stubs of ``proto/fraud/v1`` (committed; regenerate with ``python -m fraudguard.proto.generate``)."""
