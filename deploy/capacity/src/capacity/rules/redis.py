"""Redis on the cache host: a cache server and a session server."""

from __future__ import annotations

from ..registry import BUF, buf, down, rule, up


@rule(
    "clients",
    "UP({web_hosts}*{reload_overlap}*{web_worker_slots}*{redis_connections_per_request}*"
    + BUF
    + ")+{redis_admin_clients}",
    "redis.conf: maxclients; django-redis keeps a connection pool per process.",
)
def redis_cache_maxclients(v):
    """Every worker thread of every web host keeps its connections to the server, twice over
    during a graceful reload, plus the buffer and admin clients."""
    per_generation = v.web_hosts * v.web_worker_slots * v.redis_connections_per_request
    return up(v.reload_overlap * per_generation * buf(v)) + v.redis_admin_clients


@rule("clients", "{redis_cache_maxclients}", "As the cache: the same clients connect to both.")
def redis_sessions_maxclients(v):
    """The same workers connect to the session server as to the cache."""
    return v.redis_cache_maxclients


@rule(
    "MB",
    "DOWN({cache_ram_mb}*{redis_memory_share_percent}/100)",
    "redis.conf, MEMORY MANAGEMENT: maxmemory counts data only.",
)
def redis_memory_budget_mb(v):
    """Data both servers may hold together: the rest of the host's RAM covers allocator
    fragmentation, client buffers and the copy-on-write of the session server's AOF rewrite."""
    return down(v.cache_ram_mb * v.redis_memory_share_percent / 100)


@rule(
    "MB",
    "UP({survey_starts_per_day}*{session_age_days}*{bytes_per_session}"
    "*(1+{session_headroom_percent}/100)/1048576)",
    "Little's law: sessions stored = starts per day x days a session lives.",
)
def redis_sessions_maxmemory(v):
    """Sessions never expire early (noeviction), so the server holds every session started
    within its lifetime: starts per day x lifetime x bytes, with headroom."""
    stored = v.survey_starts_per_day * v.session_age_days * v.bytes_per_session
    return up(stored * (1 + v.session_headroom_percent / 100) / 1048576)


@rule(
    "MB",
    "{redis_memory_budget_mb}-{redis_sessions_maxmemory}",
    "redis.conf: allkeys-lru evicts within maxmemory; every entry can be rebuilt.",
)
def redis_cache_maxmemory(v):
    """The cache gets what the sessions leave of the budget: it evicts, sessions must not."""
    return v.redis_memory_budget_mb - v.redis_sessions_maxmemory
