"""Starts the real servers the tests run against and points Django at them."""

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from tests import servers

_RUN = SimpleNamespace()
STATIC_BUCKET = "tally-static"
# How many streaming replicas the suite runs with; `make test` runs it with 0, 1 and 2.
REPLICAS = os.environ.get("TALLY_TEST_REPLICAS", "2")


def pytest_configure(config):
    """Start PostgreSQL (primary + replicas), two Redis servers and S3; set Django up on them."""
    if not re.fullmatch(r"[0-9]{1,2}", REPLICAS):
        raise pytest.UsageError(f"TALLY_TEST_REPLICAS must be 0 or more, got {REPLICAS!r}.")
    _RUN.replication = servers.start_replication(replicas=int(REPLICAS))
    _RUN.tmp = tempfile.mkdtemp(prefix="tally-services-")
    _RUN.cache = servers.start_redis(
        tmp=_RUN.tmp, name="cache", policy="allkeys-lru", appendonly=False
    )
    _RUN.sessions = servers.start_redis(
        tmp=_RUN.tmp, name="sessions", policy="noeviction", appendonly=True
    )
    _RUN.s3 = servers.SwiftS3(workdir=Path(_RUN.tmp) / "s3")
    _RUN.s3.start()
    _RUN.s3.create_public_bucket(STATIC_BUCKET)
    replication = _RUN.replication
    _RUN.pgbouncer = servers.Pgbouncer(workdir=replication.tmp / "pgbouncer")
    _RUN.pgbouncer.start(replication)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tally.settings",
            "TALLY_SECRET_KEY": secrets.token_urlsafe(50),
            "TALLY_ALLOWED_HOSTS": "testserver",
            # Django reaches PostgreSQL only through pgbouncer in transaction pooling mode, as
            # in production, and names the replicas as Ansible does: replica_db2, replica_db3...
            "TALLY_DATABASE_URL": _RUN.pgbouncer.database_url(replication),
            "TALLY_REPLICA_URLS": _RUN.pgbouncer.replica_urls(replication),
            "TALLY_CACHE_URL": _RUN.cache.url(),
            "TALLY_SESSION_URL": _RUN.sessions.url(),
            "TALLY_SERVER_TIMING": "true",
            "TALLY_STATIC_BUCKET": STATIC_BUCKET,
            "TALLY_S3_ENDPOINT_URL": _RUN.s3.endpoint_url,
            "TALLY_S3_ACCESS_KEY_ID": _RUN.s3.access_key,
            "TALLY_S3_SECRET_ACCESS_KEY": _RUN.s3.key,
            "TALLY_S3_ADDRESSING_STYLE": "path",
            # Short enough that tests see a replica come back without long waits.
            "TALLY_REPLICA_RETRY_SECONDS": "1",
        }
    )
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    call_command("migrate", verbosity=0)
    # Pages link hashed static names from the manifest that collectstatic puts in the bucket.
    call_command("collectstatic", interactive=False, verbosity=0)
    replication.wait_for_replay()


def pytest_collection_modifyitems(config, items):
    """Leave out (not skip) the tests that need more replicas than this run has: they run in
    the runs of `make test` that have them."""
    kept, left_out = [], []
    for item in items:
        marker = item.get_closest_marker("replicas")
        (left_out if marker and marker.args[0] > int(REPLICAS) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def pytest_unconfigure(config):
    for name in ("cache", "sessions", "s3", "pgbouncer", "replication"):
        server = getattr(_RUN, name, None)
        if server is not None:
            server.stop()
    if getattr(_RUN, "tmp", None):
        shutil.rmtree(_RUN.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def replication():
    """The running primary and its replicas (`replication.replica` is the first, or None)."""
    return _RUN.replication


@pytest.fixture(scope="session")
def bring_back(replication):
    """Start stopped nodes again and wait until Django can reach them through pgbouncer."""
    from django.db import connections

    def start(*nodes):
        for node in nodes:
            node.start()
        servers.wait_for(
            lambda: _RUN.pgbouncer.serves(replication), timeout=15, what="pgbouncer to reconnect"
        )
        connections.close_all()

    return start


@pytest.fixture(scope="session")
def s3():
    """The running S3-compatible server, holding the collected static files."""
    return _RUN.s3


@pytest.fixture(scope="session")
def redis_servers():
    """The running cache and session Redis servers."""
    return SimpleNamespace(cache=_RUN.cache, sessions=_RUN.sessions)


def _app_tables():
    from django.apps import apps

    keep = {"django_migrations", "django_content_type", "auth_permission"}
    return sorted({model._meta.db_table for model in apps.get_models()} - keep)


@pytest.fixture(autouse=True)
def clean_slate(replication):
    """Give each test empty tables, empty Redis, a fresh replica pool and replicas caught up."""
    from django.core.cache import caches
    from django.db import connections

    from routing import state
    from routing.replicas import pool
    from surveys import memo

    # Code the test runs outside a request gets routing state of its own, as a script would.
    token = state.begin(floor=None)
    yield
    state.end(token)

    for conn in connections.all():
        conn.close()
    # Whatever the test stopped, paused or cut: the next one starts with every replica streaming.
    replication.restore_streaming()
    # After a restart pgbouncer waits server_login_retry before it logs in again.
    servers.wait_for(
        lambda: _RUN.pgbouncer.serves(replication), timeout=15, what="pgbouncer to reconnect"
    )
    with replication.connect(replication.primary) as conn:
        tables = ", ".join(psycopg.sql.Identifier(t).as_string(conn) for t in _app_tables())
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    for alias in ("default", "sessions"):
        caches[alias].clear()
    memo.clear_all()  # what the process kept from this test's surveys: ids start at 1 again
    pool.cache_clear()
    replication.wait_for_replay()


@pytest.fixture
def client():
    """A taker's browser."""
    return https_client()


@pytest.fixture
def author():
    """A survey author's browser, logged in to the admin as a superuser."""
    from django.contrib.auth.models import User

    user = User.objects.create_superuser("author", "a@example.com", "correct horse battery")
    browser = https_client()
    browser.force_login(user)
    return browser


def https_client():
    """A browser-like client behind nginx: HTTPS, CSRF enforced, cookies kept, Origin sent."""
    from django.test import Client

    return Client(
        enforce_csrf_checks=True,
        HTTP_HOST="testserver",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_ORIGIN="https://testserver",
    )
