"""Which release this process runs, so every response can say which one served it.

The app role installs each release in its own virtualenv, /opt/tally/releases/<id>/venv, and
points /opt/tally/current at the one to serve (ansible/roles/app, `make deploy`). The venv's
scripts name their release's interpreter by its real path, so a process started through
`current` runs, and keeps running, the release it was started with, whatever `current` points
at later: its release is the directory its interpreter's prefix is in.
"""

import os
import sys
from pathlib import Path

RELEASES_DIR = "releases"
HEADER = "X-Tally-Release"


def current(prefix: str = sys.prefix) -> str:
    """TALLY_RELEASE if set; else the release directory of this interpreter; else `dev`."""
    named = os.environ.get("TALLY_RELEASE", "").strip()
    if named:
        return named
    venv = Path(prefix)
    if venv.parent.parent.name == RELEASES_DIR:
        return venv.parent.name
    return "dev"


class ReleaseHeaderMiddleware:
    """Name the release on every response the app makes, errors and 503s included."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.release = current()

    def __call__(self, request):
        response = self.get_response(request)
        response[HEADER] = self.release
        return response
