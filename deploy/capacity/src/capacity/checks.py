"""The checks: each one a value that must not exceed another, with a message naming the numbers
when it does."""

from __future__ import annotations

from .registry import check, num


@check("pooled_server_connections", "pool_connection_room")
def pools_fit_max_connections(v):
    """pgbouncer pools fit in max_connections minus the reserved connections."""
    return (
        f"pgbouncer pools can open {num(v.pooled_server_connections)} server connections on "
        f"each database server ({num(v.web_hosts)} web hosts x pgbouncer_max_db_connections "
        f"{num(v.pgbouncer_max_db_connections)}), but postgresql_max_connections "
        f"{num(v.postgresql_max_connections)} minus {num(v.superuser_reserved_connections)} "
        f"superuser-reserved minus {num(v.admin_connections)} admin connections leaves "
        f"{num(v.pool_connection_room)}"
    )


def _fd_check(limit_name: str):
    @check(limit_name, "fd_hard_limit", name=f"{limit_name}_within_hard_limit")
    def explain(v):
        return (
            f"{limit_name} {num(getattr(v, limit_name))} is beyond the hard open-file limit "
            f"fd_hard_limit {num(v.fd_hard_limit)}"
        )

    explain.__doc__ = f"{limit_name} stays within the hard open-file limit (fd_hard_limit)."


for _limit_name in (
    "nginx_worker_rlimit_nofile",
    "common_limit_nofile",
    "app_nofile",
    "pgbouncer_nofile",
):
    _fd_check(_limit_name)


@check("offered_rps", "capacity_rps")
def target_within_capacity(v):
    """The target load fits the predicted capacity at the target utilisation."""
    if v.cpu_capacity_rps < v.worker_capacity_rps:
        bound = (
            f"{num(v.shared_cores)} shared cores at utilisation {num(v.target_utilisation)}, "
            f"{num(v.cpu_idle_cores)} of them busy at rest, {num(v.cpu_ms_per_request)} ms of "
            "CPU per request; more web hosts on the same cores would not help"
        )
    else:
        bound = (
            f"{num(v.web_hosts)} web hosts x {num(v.host_capacity_rps)} at utilisation "
            f"{num(v.target_utilisation)}; it needs {num(v.web_hosts_needed)} web hosts"
        )
    return (
        f"the target load of {num(v.offered_rps)} requests/s ({num(v.concurrent_takers)} takers, "
        f"{num(v.think_time_s)} s think time) is beyond the predicted capacity of "
        f"{num(v.capacity_rps)} requests/s ({bound})"
    )


@check("min_cache_mb", "redis_cache_maxmemory")
def sessions_leave_room_for_cache(v):
    """The sessions leave the cache at least min_cache_mb of the Redis memory budget."""
    return (
        f"sessions need {num(v.redis_sessions_maxmemory)} MB of the {num(v.redis_memory_budget_mb)}"
        f" MB Redis budget, leaving the cache {num(v.redis_cache_maxmemory)} MB, below "
        f"min_cache_mb {num(v.min_cache_mb)}"
    )


@check("sessions_one_client_mb", "session_headroom_mb")
def one_client_cannot_fill_the_session_store(v):
    """One client at the per-client session limit fits in the session store's headroom, so it
    cannot fill the store and make every page save fail."""
    return (
        f"one client starting {num(v.new_sessions_per_client_hour)} sessions an hour keeps "
        f"{num(v.sessions_one_client_mb)} MB of sessions for their {num(v.session_age_days)} days,"
        f" more than the session store's headroom of {num(v.session_headroom_mb)} MB: lower "
        "new_sessions_per_client_hour or raise session_headroom_percent"
    )


@check("busiest_server_active_connections", "db_active_connection_limit")
def db_concurrency_fits_cores(v):
    """Busy connections at capacity stay within about two per core on every database server."""
    return (
        f"at capacity {num(v.busiest_server_active_connections)} server connections are busy "
        f"at once on the busiest database server ({num(v.primary_db_transactions_per_s)} "
        f"transactions/s on the primary, {num(v.replica_db_transactions_per_s)} on each of "
        f"{num(v.db_replicas)} replicas), more than 2 x {num(v.db_cores)} database cores = "
        f"{num(v.db_active_connection_limit)}"
    )
