"""Liveness (/healthz) and readiness (/readyz) endpoints for load balancers and monitoring."""

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from routing import PRIMARY
from routing.replicas import pool
from tally import release


@never_cache
@require_GET
def healthz(request):
    """The process is up and serving, and which release it runs; touches no backend, so a slow
    database cannot fail it."""
    return HttpResponse(f"ok {release.current()}\n", content_type="text/plain")


@never_cache
@require_GET
def readyz(request):
    """Report every backend and each replica's state; 503 when the primary or sessions are down."""
    primary = _check_primary()
    checks = {
        "primary": primary,
        # Without the primary this host is not ready whatever the replicas say, so they are
        # reported as last seen instead of each being waited for too: a load balancer's probe
        # must get its answer within its timeout (a host cut off from the database network
        # would otherwise take a timeout per replica).
        "replicas": {
            alias: _check_replica(alias, refresh=primary["ok"])
            for alias in settings.TALLY_REPLICA_ALIASES
        },
        "cache": _check_redis("default") if _is_redis("default") else {"ok": True, "off": True},
    }
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.cache":
        checks["sessions"] = _check_redis(settings.SESSION_CACHE_ALIAS)
    else:  # sessions in the database (make bench's naive deployment): the primary holds them
        checks["sessions"] = {"ok": checks["primary"]["ok"], "store": "database"}
    ready = checks["primary"]["ok"] and checks["sessions"]["ok"]
    body = {"ready": ready, "release": release.current(), **checks}
    return JsonResponse(body, status=200 if ready else 503)


def _check_primary():
    try:
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            (in_recovery,) = cursor.fetchone()
    except DatabaseError as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    if in_recovery:
        return {"ok": False, "error": "the primary alias points at a server in recovery"}
    return {"ok": True}


def _check_replica(alias, *, refresh):
    # The pool's own verdict, the one reads are routed by; the reason says why one is skipped.
    status = pool().status(alias, refresh=refresh)
    return {
        "ok": status.usable,
        "reason": status.reason,
        "lag_seconds": round(status.lag_seconds, 3),
        "replay_lsn_behind_bytes": status.behind_bytes,
        **({} if refresh else {"as_last_seen": True}),
    }


def _is_redis(alias):
    return settings.CACHES[alias]["BACKEND"].startswith("django_redis.")


def _check_redis(alias):
    try:
        get_redis_connection(alias).ping()
    except (RedisError, OSError) as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True}
