"""Project-wide checks: migrations, Django's deployment checklist, settings errors, seeding."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from surveys.models import Answer, Response, Survey

APP = Path(__file__).resolve().parent.parent


def test_no_model_change_lacks_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_the_deployment_checklist_has_no_warnings():
    out = io.StringIO()
    call_command("check", "--deploy", "--fail-level", "WARNING", stdout=out, stderr=out)
    assert "no issues" in out.getvalue()


def _settings_error(**overrides):
    env = {**os.environ, **overrides}
    env = {k: v for k, v in env.items() if v is not None}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=APP,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_the_naive_deployment_switches_off_the_cache_and_keeps_sessions_in_the_database():
    """make bench's naive deployment: Django's defaults, configured through the environment."""
    env = {**os.environ, "TALLY_CACHE_ENABLED": "false"}
    env.pop("TALLY_SERVER_TIMING", None)  # off by default
    env["TALLY_SESSION_ENGINE"] = "django.contrib.sessions.backends.db"
    env.pop("TALLY_CACHE_URL", None)  # not needed without the cache
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CACHES['default']['BACKEND'], s.SESSION_ENGINE, "
        "'tally.middleware.ServerTimingMiddleware' in s.MIDDLEWARE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=APP, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [
        "django.core.cache.backends.dummy.DummyCache",
        "django.contrib.sessions.backends.db",
        "False",  # no Server-Timing
    ]


def test_a_missing_secret_stops_startup_with_its_name():
    line = _settings_error(TALLY_SECRET_KEY=None)
    assert "ImproperlyConfigured: TALLY_SECRET_KEY is not set" in line


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TALLY_DB_CONN_MAX_AGE", "soon", "TALLY_DB_CONN_MAX_AGE must be an integer, got 'soon'"),
        ("TALLY_DB_CONN_MAX_AGE", "-1", "TALLY_DB_CONN_MAX_AGE must be at least 0"),
        ("TALLY_HTTPS", "maybe", "TALLY_HTTPS must be true or false, got 'maybe'"),
        ("TALLY_REPLICA_STATUS_TTL", "fast", "TALLY_REPLICA_STATUS_TTL must be a number"),
        ("TALLY_DATABASE_URL", "mysql://u:p@h/db", "Tally needs PostgreSQL"),
    ],
)
def test_a_malformed_setting_names_the_variable(name, value, message):
    assert message in _settings_error(**{name: value})


def test_seed_surveys_creates_surveys_with_responses(replication):
    out = io.StringIO()
    call_command("seed_surveys", "--surveys", "2", "--responses", "30", stdout=out)
    assert Survey.objects.count() == 2
    assert Response.objects.count() == 60
    completed = Response.objects.filter(completed_at__isnull=False)
    assert completed.exists()
    assert all(r.reached_page == 6 for r in completed)
    assert Answer.objects.filter(response__in=completed).count() == completed.count() * 50
    call_command("seed_surveys", "--if-empty", stdout=out)
    assert Survey.objects.count() == 2
    assert "nothing seeded" in out.getvalue()


def test_seed_surveys_refuses_bad_arguments(replication):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="zero or more"):
        call_command("seed_surveys", "--responses", "-1")
    call_command("seed_surveys", "--surveys", "1", "--responses", "0", stdout=io.StringIO())
    with pytest.raises(CommandError, match="exists already"):
        call_command("seed_surveys", "--surveys", "1", "--responses", "0")
