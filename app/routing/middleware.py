"""Middleware that carries read-your-writes across requests and survives a failing replica."""

import logging

from django.conf import settings
from django.db import DatabaseError, connections

from routing import PRIMARY, lsn, state
from routing.replicas import pool

logger = logging.getLogger("tally.routing")

COOKIE = "tally_wal"
_SALT = "tally.routing.wal"
# Used when the primary's position cannot be read after a write: the client then reads from
# the primary until the cookie expires, the blind pin that the WAL position normally avoids.
_PIN_UNTIL_EXPIRY = (1 << 64) - 1


class ReadYourWritesMiddleware:
    """Remember where a client's last write got to, in a signed cookie, and route by it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        floor = lsn.parse(
            request.get_signed_cookie(
                COOKIE, default=None, salt=_SALT, max_age=settings.TALLY_READ_YOUR_WRITES_SECONDS
            )
        )
        token = state.begin(floor=floor)
        try:
            response = self.get_response(request)
            self._remember(response, state.current())
        finally:
            state.end(token)
        return response

    def _remember(self, response, current):
        # The cookie is kept until it expires, never dropped early: it only keeps the client off
        # replicas that lack its write, so it costs nothing while the others serve it, whereas
        # dropping it once one replica has caught up would hand the client to a lagging one.
        if current.wrote:
            response.set_signed_cookie(
                COOKIE,
                lsn.format_lsn(_primary_position()),
                salt=_SALT,
                max_age=settings.TALLY_READ_YOUR_WRITES_SECONDS,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )


def _primary_position():
    try:
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            position = lsn.parse(cursor.fetchone()[0])
    except DatabaseError:
        logger.exception("could not read the primary's WAL position; pinning the client")
        return _PIN_UNTIL_EXPIRY
    pool().note_primary_lsn(position)
    return position


class ReplicaFailoverMiddleware:
    """Run a view again on the primary if a replica failed before the request wrote anything.

    It must come after any middleware whose process_exception should only see what this one
    cannot recover: Django calls process_exception from the last middleware up.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        request.tally_view = (view_func, view_args, view_kwargs)

    def process_exception(self, request, exception):
        current = state.current()
        alias = current.replica_used
        if (
            not isinstance(exception, DatabaseError)
            or current.wrote
            or alias is None
            or not connections[alias].errors_occurred
        ):
            return None
        pool().trip(alias, exception.__class__.__name__)
        current.replica_used = None
        view_func, view_args, view_kwargs = request.tally_view
        try:
            return view_func(request, *view_args, **view_kwargs)
        except DatabaseError:
            logger.exception("the retry on the primary failed too")
            return None
