"""PostgreSQL storage through asyncpg: the embedded server, migrations, daily partitions and the pool.

``Database.open(dsn, data_dir)`` is the entry point; ``dsn=None`` means the embedded server in ``DATA_DIR/postgres``.
The migration runner is ``fraudguard.db.migrate.migrate`` (not re-exported here: the name would hide the module).
"""

from fraudguard.db.database import Database, Health, PartitionPolicy
from fraudguard.db.embedded import EmbeddedPostgres
from fraudguard.db.errors import (
    DatabaseAuthError,
    DatabaseConfigError,
    DatabaseError,
    DatabaseUnreachableError,
    DuplicateRowError,
    EmbeddedServerError,
    MigrationError,
    PartitionMissingError,
)
from fraudguard.db.migrate import Migration, MigrationReport, load_migrations
from fraudguard.db.partitions import PartitionChanges, ensure_partitions

__all__ = [
    "Database",
    "DatabaseAuthError",
    "DatabaseConfigError",
    "DatabaseError",
    "DatabaseUnreachableError",
    "DuplicateRowError",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "Health",
    "Migration",
    "MigrationError",
    "MigrationReport",
    "PartitionChanges",
    "PartitionMissingError",
    "PartitionPolicy",
    "ensure_partitions",
    "load_migrations",
]
