"""Turn a backend outage during a view into a 503 that says what happened, not a bare 500."""

import logging
import time

from django.db import OperationalError
from django.shortcuts import render
from redis.exceptions import RedisError

logger = logging.getLogger("tally.outage")


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
        if not isinstance(exception, OperationalError | RedisError):
            return None
        logger.error(
            "backend unavailable during %s %s: %r", request.method, request.path, exception
        )
        response = render(request, "503.html", status=503)
        response["Retry-After"] = "5"
        return response


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
