"""The audit log refuses UPDATE and DELETE in the database itself, not only in Python.

PostgreSQL: a trigger function raising an exception. SQLite: RAISE(ABORT) triggers.
Other databases get the Python guard only. TRUNCATE (what test flushes use on PostgreSQL)
fires no row triggers; on SQLite a test flush needs the triggers dropped first (see
``audits.append_only``).
"""

from django.db import migrations


def install(apps, schema_editor):
    from audits.append_only import AUDIT_TABLES, install_guard

    install_guard(schema_editor.connection, AUDIT_TABLES)


def remove(apps, schema_editor):
    from audits.append_only import AUDIT_TABLES, remove_guard

    remove_guard(schema_editor.connection, AUDIT_TABLES)


class Migration(migrations.Migration):
    dependencies = [("audits", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
