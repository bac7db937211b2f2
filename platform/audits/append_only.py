"""Database-level guards that make history tables append-only.

The audit log (``audits_auditlogentry``) and governance's history (the privacy-budget
ledger and promotion events) refuse UPDATE and DELETE in the database itself, not only
in Python (``AppendOnlyError`` / ``AppendOnlyRecordError`` in the models). Each app's
migration installs the guard for its own tables. The SQL lives here, not in the
migrations, so tests that must flush these tables on SQLite (transactional tests) can
lift and restore it.

PostgreSQL: one trigger function per table raising ``insufficient_privilege``. SQLite:
``RAISE(ABORT)`` triggers. Other databases get the Python guard only. TRUNCATE (what
test flushes use on PostgreSQL) fires no row triggers.
"""

from __future__ import annotations

# table -> the message the database raises on UPDATE or DELETE
AUDIT_TABLES = {"audits_auditlogentry": "the audit log is append-only"}
GOVERNANCE_TABLES = {
    "governance_ledgerentry": "the privacy-budget ledger is append-only",
    "governance_promotionevent": "promotion history is append-only",
}
TABLES = {**AUDIT_TABLES, **GOVERNANCE_TABLES}

# Kept for callers that name the audit log's guard.
TABLE = "audits_auditlogentry"
MESSAGE = AUDIT_TABLES[TABLE]


def _postgres_install(table: str, message: str) -> list[str]:
    function = f"tessera_{table}_append_only"
    if table == TABLE:  # the name migration audits.0002 created
        function = "tessera_audit_log_append_only"
    return [
        f"""
        CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '{message}' USING ERRCODE = 'insufficient_privilege';
        END;
        $$ LANGUAGE plpgsql
        """,
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"""
        CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION {function}()
        """,
    ]


def _postgres_remove(table: str) -> list[str]:
    function = "tessera_audit_log_append_only" if table == TABLE else f"tessera_{table}_append_only"
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"DROP FUNCTION IF EXISTS {function}()",
    ]


def _sqlite_install(table: str, message: str) -> list[str]:
    return [
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_{action} BEFORE {action.upper()} ON {table}
        BEGIN SELECT RAISE(ABORT, '{message}'); END
        """
        for action in ("update", "delete")
    ]


def _sqlite_remove(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_no_{action}" for action in ("update", "delete")]


def _present(connection, tables) -> list[str]:
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    return [table for table in tables if table in existing]


def _run(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install_guard(connection, tables: dict[str, str] | None = None) -> None:
    """Create the triggers (idempotent) on those of ``tables`` (default: all) that exist;
    a no-op on databases other than PostgreSQL and SQLite."""
    tables = TABLES if tables is None else tables
    for table in _present(connection, tables):
        if connection.vendor == "postgresql":
            _run(connection, _postgres_install(table, tables[table]))
        elif connection.vendor == "sqlite":
            _run(connection, _sqlite_install(table, tables[table]))


def remove_guard(connection, tables: dict[str, str] | None = None) -> None:
    """Drop the triggers (idempotent)."""
    tables = TABLES if tables is None else tables
    for table in _present(connection, tables):
        if connection.vendor == "postgresql":
            _run(connection, _postgres_remove(table))
        elif connection.vendor == "sqlite":
            _run(connection, _sqlite_remove(table))
