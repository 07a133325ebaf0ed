"""Domain errors. They know nothing of transports: ``scoring.grpc_errors`` maps them to
gRPC status codes and the gateway maps them to problem+json."""

from __future__ import annotations


class FraudguardError(Exception):
    """Base of every error we raise on purpose."""


class ValidationError(FraudguardError):
    """Bad input. ``field`` is a path such as ``transaction.amount_minor``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BundleError(FraudguardError):
    """A model bundle is missing, malformed, or does not match the feature kernels."""


class NotFoundError(FraudguardError):
    """The thing asked for does not exist."""


class UnavailableError(FraudguardError):
    """Temporarily unable to serve (e.g. no model loaded yet); retry later."""
