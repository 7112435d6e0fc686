"""Every migration must work with the release that is still running while it is applied.

`make deploy` applies migrations once, before the first web host restarts, so for the whole
roll the old release runs against the new schema. A migration that drops, renames or retypes
a column, adds a NOT NULL column without a database default, or takes a long lock, breaks
that release or stalls it. django-migration-linter reads the SQL of each migration and refuses
those. The second step of an expand/contract change (app/README.md, "Changing the schema")
is the one exception: its name says `contract`, and it ships in the release after the one that
stopped using what it removes.
"""

import pytest
from django.apps import apps
from django.db import connection, migrations, models
from django.db.migrations.executor import MigrationExecutor
from django_migration_linter import MigrationLinter
from django_migration_linter.sql_analyser.analyser import analyse_sql_statements

# In a migration's name: the explicitly marked contract step of an expand/contract change.
CONTRACT_MARK = "contract"
# Migrations whose finding was read and found safe for the running release, each with why.
REVIEWED = {
    "0002_response_start_key": (
        "the unique constraint is made USING an index built CONCURRENTLY, which takes a brief "
        "lock only; it covers a new nullable column the older release never writes, and NULLs "
        "never conflict"
    ),
}


def project_apps():
    """The project's own apps that have migrations (not Django's)."""
    return sorted(
        config.label
        for config in apps.get_app_configs()
        if not config.name.startswith("django.")
        and MigrationExecutor(connection).loader.migrations_module(config.label)[0]
    )


def linter(**options):
    return MigrationLinter(
        include_apps=project_apps(),
        ignore_name_contains=CONTRACT_MARK,
        ignore_name=list(REVIEWED),
        no_cache=True,
        all_warnings_as_errors=True,
        no_output=False,
        **options,
    )


def test_every_migration_is_backward_compatible_or_a_marked_contract_step():
    checked = linter()
    checked.lint_all_migrations()
    assert "surveys" in project_apps()
    assert checked.nb_total - checked.nb_ignored >= 2  # it did read migrations
    assert not checked.has_errors, (
        f"{checked.nb_erroneous} migration(s) would break the running release during a deploy"
        " (the linter's output above says which and why): make it an expand step, or name"
        f" the contract step with {CONTRACT_MARK!r} (app/README.md)"
    )


def _sql_of(*operations):
    """The SQL a migration of `operations` on the surveys app would run now."""
    migration = type("Migration", (migrations.Migration,), {"operations": list(operations)})(
        "9999_probe", "surveys"
    )
    state = MigrationExecutor(connection).loader.project_state()
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        migration.apply(state, editor, collect_sql=True)
    return editor.collected_sql


@pytest.mark.parametrize(
    "operation",
    [
        migrations.RemoveField("answer", "text_value"),
        migrations.RenameField("survey", "title", "name"),
        migrations.AddField("survey", "owner_note", models.TextField()),
    ],
    ids=["drop a column", "rename a column", "add a NOT NULL column"],
)
def test_the_linter_refuses_what_would_break_the_running_release(operation):
    errors, _ignored, warnings = analyse_sql_statements(
        linter().sql_analyser_class, _sql_of(operation), []
    )
    assert errors or warnings, f"the linter let {operation.describe()} through"


def test_the_linter_lets_an_expand_step_through():
    expand = migrations.AddField("survey", "owner_note", models.TextField(null=True))
    errors, _ignored, warnings = analyse_sql_statements(
        linter().sql_analyser_class, _sql_of(expand), []
    )
    assert not errors
    assert not warnings
