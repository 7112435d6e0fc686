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


@rule("s", "{session_age_days}*86400", "Django: SESSION_COOKIE_AGE, also each session's TTL.")
def app_session_age_s(v):
    """How long a session lives, in the app's unit: the lifetime the store is sized for."""
    return v.session_age_days * 86400


@rule(
    "MB",
    "{redis_sessions_maxmemory}-{survey_starts_per_day}*{session_age_days}*{bytes_per_session}"
    "/1048576",
    "The headroom over the sessions the workload keeps.",
)
def session_headroom_mb(v):
    """What the session store holds beyond the sessions of the expected starts."""
    stored = v.survey_starts_per_day * v.session_age_days * v.bytes_per_session
    return v.redis_sessions_maxmemory - stored / 1048576


@rule(
    "MB",
    "{new_sessions_per_client_hour}*24*{session_age_days}*{bytes_per_session}/1048576",
    "Little's law again: one client at the limit for a whole session lifetime.",
)
def sessions_one_client_mb(v):
    """The most one client address can keep in the session store: it starts sessions at the
    app's per-client limit (only POSTs create sessions), and they expire as fast as it makes
    new ones once a lifetime has passed."""
    return v.new_sessions_per_client_hour * 24 * v.session_age_days * v.bytes_per_session / 1048576


@rule("sessions/h", "{new_sessions_per_client_hour}", "The app's limit (429 beyond it).")
def app_new_sessions_per_client_hour(v):
    """The per-client limit the app enforces, as the model's input says."""
    return v.new_sessions_per_client_hour


@rule(
    "MB",
    "{redis_memory_budget_mb}-{redis_sessions_maxmemory}",
    "redis.conf: allkeys-lru evicts within maxmemory; every entry can be rebuilt.",
)
def redis_cache_maxmemory(v):
    """The cache gets what the sessions leave of the budget: it evicts, sessions must not."""
    return v.redis_memory_budget_mb - v.redis_sessions_maxmemory
