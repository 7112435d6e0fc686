"""Turn a backend outage during a view into a 503 that says what happened, not a bare 500."""

import logging
import time

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.cache import cache
from django.db import OperationalError
from django.shortcuts import render
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

logger = logging.getLogger("tally.outage")

# A backend that cannot be reached or cannot take a write: the database, or a Redis server
# (django-redis wraps the session store's errors in ConnectionInterrupted).
BACKEND_ERRORS = (OperationalError, RedisError, ConnectionInterrupted)
RETRY_AFTER_SECONDS = 5


def unavailable(request, *, saved=False):
    """503 with Retry-After. `saved`: what the client sent was written before the failure."""
    response = render(request, "503.html", {"saved": saved}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ServiceUnavailableMiddleware:
    """A database or Redis server that cannot be reached gives 503 with Retry-After.

    Writes are transactional, so the taker is told their page was not saved and can send it
    again; load balancers and clients treat 503 as retryable, unlike 500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, BACKEND_ERRORS):
            return None
        logger.error(
            "backend unavailable during %s %s: %r", request.method, request.path, exception
        )
        return unavailable(request)


class SessionStoreMiddleware(SessionMiddleware):
    """Django's SessionMiddleware, with a 503 instead of a 500 when the session cannot be saved.

    The session is saved after the view, so a page's answers may already be committed when
    the store turns out to be full or away: the 503 then says so, and that sending the page
    again is safe (a page's answers are saved once, by its submission id). A store that is
    restarting is waited for: the session store's client retries (settings.py).
    """

    def process_request(self, request):
        super().process_request(request)
        return self._over_new_session_limit(request)

    @staticmethod
    def _over_new_session_limit(request):
        """429 for a POST that would start a session past its client's hourly limit.

        Counted in the cache per client and clock hour, before the view, so a refused POST
        writes nothing. With the cache away nothing is counted: the limit guards the session
        store's room, and refusing every new taker would be the outage it exists to prevent.
        """
        limit = settings.TALLY_NEW_SESSIONS_PER_CLIENT_HOUR
        client = request.headers.get("X-Tally-Client", "")
        if not (limit and client and request.method == "POST"):
            return None
        request.session.keys()  # loads it: an unknown or expired cookie leaves no session key
        if request.session.session_key is not None:
            return None
        now = int(time.time())
        key = f"new-sessions:{client}:{now // 3600}"
        cache.add(key, 0, timeout=3600)
        try:
            started = cache.incr(key)
        except ValueError:  # the counter is gone (the cache restarted or evicted it)
            return None
        if not isinstance(started, int) or started <= limit:
            return None
        logger.warning("client %s is past %s new sessions this hour", client, limit)
        response = render(request, "429.html", {"limit": limit}, status=429)
        response["Retry-After"] = str(3600 - now % 3600)
        return response

    def process_response(self, request, response):
        try:
            return super().process_response(request, response)
        except BACKEND_ERRORS as error:
            logger.error(
                "session not saved after %s %s (%s): %r",
                request.method,
                request.path,
                response.status_code,
                error,
            )
            saved = request.method == "POST" and response.status_code < 400
            return unavailable(request, saved=saved)


class ServerTimingMiddleware:
    """Tell the client how long Django took: `Server-Timing: app;dur=12.3` (milliseconds).

    The load tests read it to measure each endpoint's service time inside the worker, apart
    from the time a request waited in nginx or in gunicorn's listen backlog: the capacity
    model's service times come from it. Outermost, so it times every other middleware too.
    On only with TALLY_SERVER_TIMING=true (the load-tested fleets): timing is not for everyone.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        response["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
        return response
