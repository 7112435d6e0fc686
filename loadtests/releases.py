"""Scratch releases for the deploy drill: HEAD plus a small change, committed under a ref of
its own with git's plumbing (a temporary index), so the working tree, the index and every
branch stay as they were.

The change is a module that marks the release, so its content (and so its release id, which
is the hash of its wheels) differs from HEAD's; with `migration`, also a new model and the
migration that creates its table: an expand step, which the running release never notices.
With `broken`, the WSGI module fails at import: gunicorn cannot boot a worker, so the first
host rolled fails its readiness gate, while the management commands (migrate, collectstatic)
still work, as in a release whose bug only serving shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from loadtests.fleet import ROOT

REF = "refs/tally/scratch-release"
MARKER = "app/tally/scratch_release.py"
MODELS = "app/surveys/models.py"
MIGRATIONS = "app/surveys/migrations"
WSGI = "app/tally/wsgi.py"

MARKER_TEXT = '''"""Marks a scratch release that the deploy drill built (loadtests/releases.py)."""

SCRATCH = True
'''
BROKEN_TEXT = """
raise RuntimeError("a scratch release built broken by the deploy drill (loadtests/releases.py)")
"""
MODEL_TEXT = '''

class DrillProbe(models.Model):
    """Added by the deploy drill's scratch release: a table the running release never reads."""

    note = models.TextField(blank=True)
'''
MIGRATION_TEXT = """# The deploy drill's expand step (loadtests/releases.py): a new table.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("surveys", "{previous}")]

    operations = [
        migrations.CreateModel(
            name="DrillProbe",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("note", models.TextField(blank=True)),
            ],
        ),
    ]
"""


def _git(*args: str, env=None, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _latest_migration(head: str) -> str:
    names = _git("ls-tree", "--name-only", f"{head}:{MIGRATIONS}").split()
    numbered = sorted(n.removesuffix(".py") for n in names if re.match(r"\d{4}_.*\.py$", n))
    return numbered[-1]


def scratch_release(migration: bool = False, broken: bool = False) -> str:
    """Commit HEAD plus the marker (with `migration` the expand step, with `broken` a WSGI
    module that cannot be imported) under REF; return REF."""
    head = _git("rev-parse", "HEAD")
    files = {MARKER: MARKER_TEXT}
    if broken:
        files[WSGI] = _git("show", f"{head}:{WSGI}") + "\n" + BROKEN_TEXT
    if migration:
        previous = _latest_migration(head)
        number = int(previous[:4]) + 1
        files[MODELS] = _git("show", f"{head}:{MODELS}") + "\n" + MODEL_TEXT
        files[f"{MIGRATIONS}/{number:04d}_drillprobe.py"] = MIGRATION_TEXT.format(previous=previous)
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        _git("read-tree", head, env=index)
        for path, text in files.items():
            blob = _git("hash-object", "-w", "--stdin", stdin=text)
            _git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
        tree = _git("write-tree", env=index)
    identity = {
        "GIT_AUTHOR_NAME": "Tally drills",
        "GIT_AUTHOR_EMAIL": "drills@localhost",
        "GIT_COMMITTER_NAME": "Tally drills",
        "GIT_COMMITTER_EMAIL": "drills@localhost",
    }
    message = (
        "Scratch release for the deploy drill"
        + " (with an expand migration)" * migration
        + " (broken: it cannot serve)" * broken
    )
    commit = _git("commit-tree", tree, "-p", head, "-m", message, env=identity)
    _git("update-ref", REF, commit)
    return REF
