"""Database-level guard that makes ``audits_auditlogentry`` append-only.

Installed by migration 0002. The SQL lives here, not in the migration, so tests that
must flush the table on SQLite (transactional tests) can lift and restore it.
"""

from __future__ import annotations

TABLE = "audits_auditlogentry"
MESSAGE = "the audit log is append-only"

_POSTGRES_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION tessera_audit_log_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql
    """,
    f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
    f"""
    CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION tessera_audit_log_append_only()
    """,
]
_POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS tessera_audit_log_append_only()",
]
_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]
_SQLITE_REMOVE = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_delete",
]


def _run(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install_guard(connection) -> None:
    """Create the triggers (idempotent); a no-op on databases other than PostgreSQL/SQLite."""
    if connection.vendor == "postgresql":
        _run(connection, _POSTGRES_INSTALL)
    elif connection.vendor == "sqlite":
        _run(connection, _SQLITE_INSTALL)


def remove_guard(connection) -> None:
    """Drop the triggers (idempotent)."""
    if connection.vendor == "postgresql":
        _run(connection, _POSTGRES_REMOVE)
    elif connection.vendor == "sqlite":
        _run(connection, _SQLITE_REMOVE)
