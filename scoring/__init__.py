"""The scoring service: wire codecs, feature kernels and state, model runtime, decisions, the gRPC server."""

from scoring._kernel_cache import use_source_keyed_cache

use_source_keyed_cache()  # before any kernel module is imported: see scoring/_kernel_cache.py
