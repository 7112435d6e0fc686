"""Turn a backend outage during a view into a 503 that says what happened, not a bare 500."""

import logging

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
