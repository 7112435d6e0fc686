"""nginx on the load balancers, and the default open-file limit of every service."""

from __future__ import annotations

from ..registry import BUF, buf, rule, up


@rule(
    "connections",
    "{concurrent_takers}*{client_connections_per_taker}",
    "nginx role: keepalive_timeout 75 s outlasts think time; HTTP/2 uses one per browser.",
)
def client_connections(v):
    """Browser connections open at once: a taker's connection stays open while they think."""
    return v.concurrent_takers * v.client_connections_per_taker


@rule(
    "connections",
    "MAX(512,UP(2*({client_connections}+{web_hosts}*{web_worker_slots})*" + BUF + "/"
    "({lb_hosts}*{lb_cores})))",
    "nginx docs: worker_connections counts client and upstream connections (default 512).",
)
def nginx_worker_connections(v):
    """Connections per nginx worker (one per core): browsers plus upstream connections to
    every worker slot, spread over the load balancers' workers, doubled because accept() does
    not spread them evenly, plus the buffer; never below nginx's default 512."""
    total = v.client_connections + v.web_hosts * v.web_worker_slots
    return max(512, up(2 * total * buf(v) / (v.lb_hosts * v.lb_cores)))


@rule(
    "files",
    "2*{nginx_worker_connections}",
    "nginx docs: worker_rlimit_nofile; at least 2 x worker_connections.",
)
def nginx_worker_rlimit_nofile(v):
    """Open files per nginx worker: each connection plus the file or cache entry it serves."""
    return 2 * v.nginx_worker_connections


@rule(
    "files",
    "UP(MAX({nginx_worker_rlimit_nofile},MAX({redis_cache_maxclients},"
    "{redis_sessions_maxclients})+32+{fd_slack},1000+{fd_slack})/1024)*1024",
    "redis.conf: maxclients needs the file limit + 32; PostgreSQL max_files_per_process 1000.",
)
def common_limit_nofile(v):
    """Default open-file limit of every service (soft = hard): nginx raises its workers only
    up to it where root lacks CAP_SYS_RESOURCE (the local fleet), Redis needs maxclients + 32,
    a PostgreSQL backend up to 1000 files; plus slack, rounded up to a multiple of 1024."""
    redis = max(v.redis_cache_maxclients, v.redis_sessions_maxclients) + 32 + v.fd_slack
    need = max(v.nginx_worker_rlimit_nofile, redis, 1000 + v.fd_slack)
    return up(need / 1024) * 1024
