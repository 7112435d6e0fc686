"""A kept database connection is checked without a round trip, and replaced once it died."""

import pytest
from django.db import close_old_connections, connections
from django.db.backends.postgresql import base as django_postgresql

from tests import conftest


@pytest.fixture
def round_trips(monkeypatch):
    """Count the checks that went to the server (Django's own SELECT 1)."""
    sent = []
    original = django_postgresql.DatabaseWrapper.is_usable

    def is_usable(self):
        sent.append(self.alias)
        return original(self)

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", is_usable)
    return sent


def restart_pgbouncer(replication):
    conftest._RUN.pgbouncer.stop()
    conftest._RUN.pgbouncer.process.wait(timeout=10)
    conftest._RUN.pgbouncer.start(replication)


def test_a_quiet_kept_connection_is_checked_without_a_statement(replication, round_trips):
    connection = connections["default"]
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.is_usable() is True
    assert round_trips == []


def test_a_connection_pgbouncer_closed_fails_its_check_and_is_replaced(replication, round_trips):
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    kept = connection.connection
    restart_pgbouncer(replication)
    # What a request's start does (Django's test client leaves it out of its requests).
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)
    assert round_trips == ["default"]  # the socket told; Django's own check confirmed
    assert connection.connection is not kept
    # The new connection is quiet again: the next request's check sends nothing.
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 3")
    assert round_trips == ["default"]
