"""The database as the settings describe it, and the exit code of each way opening it can fail.

Every command that needs the database (``serve``, ``keys``, ``audit``, ``erase``, ...) opens it here, so they all
honour ``FRAUDGUARD_DATABASE_URL`` / the embedded default, the pool size and the partition policy alike.
"""

from __future__ import annotations

from fraudguard.db.database import Database, PartitionPolicy
from fraudguard.db.errors import (
    DatabaseAuthError,
    DatabaseConfigError,
    DatabaseError,
    DatabaseUnreachableError,
    EmbeddedServerError,
    MigrationError,
)
from fraudguard.exit_codes import ExitCode
from fraudguard.settings import Settings


def partition_policy(settings: Settings) -> PartitionPolicy:
    return PartitionPolicy(ahead_days=settings.partition_ahead_days, behind_days=1,
                           retention_days=settings.retention_days or None)


async def open_database(settings: Settings, *, max_size: int | None = None) -> Database:
    """Connect (starting the embedded server when no URL is set), migrate, make partitions."""
    size = max_size if max_size is not None else settings.db_pool_size
    return await Database.open(settings.database_url, settings.data_dir, min_size=1, max_size=size,
                               connect_timeout_s=settings.db_connect_timeout_s,
                               partitions=partition_policy(settings))


def exit_code_of(exc: DatabaseError) -> ExitCode:
    """The documented exit code for a database error raised while opening or using the database."""
    if isinstance(exc, MigrationError):
        return ExitCode.MIGRATION_FAILED
    if isinstance(exc, DatabaseAuthError | DatabaseConfigError):
        return ExitCode.DATABASE_CONFIG
    if isinstance(exc, DatabaseUnreachableError | EmbeddedServerError):
        return ExitCode.DATABASE_UNREACHABLE
    return ExitCode.FAILURE
