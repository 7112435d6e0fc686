"""pgbouncer, one per web host (transaction pooling): one pool per database entry."""

from __future__ import annotations

from ..registry import BUF, buf, critbinom, rule, up


@rule(
    "connections",
    "MIN({web_worker_slots},MAX({min_server_pool},"
    "CRITBINOM({web_worker_slots},MIN(1,{db_time_share}),1-{pool_wait_probability})))",
    "Binomial tail over the workers (Erlang's finite-source reasoning); pgbouncer docs.",
)
def pgbouncer_default_pool_size(v):
    """Server connections per database entry. With every worker busy, each is inside a
    transaction db_time_share of the time, so the number in a transaction at once is
    Binomial(worker slots, db_time_share): the pool is the smallest count that this exceeds
    with probability pool_wait_probability at most, at least min_server_pool, at most one per
    worker slot. Sizing for the mean instead (slots x share) leaves bursts waiting. Each entry
    (the primary, every replica) gets this pool, so any one server can take the whole host's
    load while the others are skipped."""
    need = critbinom(v.web_worker_slots, min(1.0, v.db_time_share), 1 - v.pool_wait_probability)
    return min(v.web_worker_slots, max(v.min_server_pool, need))


@rule(
    "connections",
    "{pgbouncer_default_pool_size}",
    "pgbouncer docs: min_pool_size keeps connections open while the pool has a client.",
)
def pgbouncer_min_pool_size(v):
    """Server connections kept open: the whole pool. A pool that grows on demand makes the
    client that needs the next connection wait for its TCP, TLS and SCRAM login (1.5 to 5 ms
    each, measured on the local fleet: most of the waits pgbouncer counted in a step load).
    max_connections already counts every pool at its cap, so an open connection costs only an
    idle backend. pgbouncer opens them once a client has connected (Django's persistent
    connections), never closes them for idleness (server_idle_timeout only trims a pool above
    this size), and renews each after server_lifetime."""
    return v.pgbouncer_default_pool_size


@rule(
    "connections",
    "MAX(1,UP({pgbouncer_default_pool_size}*{connection_buffer_percent}/100))",
    "pgbouncer docs: reserve_pool_size, used after reserve_pool_timeout.",
)
def pgbouncer_reserve_pool_size(v):
    """Extra server connections for a burst that waits longer than reserve_pool_timeout: the
    buffer share of the pool, at least one."""
    return max(1, up(v.pgbouncer_default_pool_size * v.connection_buffer_percent / 100))


@rule(
    "connections",
    "{pgbouncer_default_pool_size}+{pgbouncer_reserve_pool_size}",
    "pgbouncer docs: max_db_connections caps all pools of one database.",
)
def pgbouncer_max_db_connections(v):
    """Hard cap per database entry: the pool plus its reserve, never more."""
    return v.pgbouncer_default_pool_size + v.pgbouncer_reserve_pool_size


@rule(
    "connections",
    "UP(({reload_overlap}*{web_worker_slots}*{db_entries}+{pool_admin_clients})*" + BUF + ")",
    "pgbouncer docs: max_client_conn; gunicorn docs: HUP starts new workers first.",
)
def pgbouncer_max_client_conn(v):
    """Client connections pgbouncer accepts: every worker thread keeps one per database entry
    (CONN_MAX_AGE), twice over while a graceful reload overlaps old and new workers, plus
    migrations and stats clients, plus the buffer. A client slot costs about 2 kB."""
    clients = v.reload_overlap * v.web_worker_slots * v.db_entries + v.pool_admin_clients
    return up(clients * buf(v))


@rule(
    "files",
    "UP(({pgbouncer_max_client_conn}+{db_entries}*{pgbouncer_max_db_connections}"
    "+{fd_slack})/1024)*1024",
    "pgbouncer docs: max_client_conn + max pool_size x databases x users descriptors.",
)
def pgbouncer_nofile(v):
    """Open-file limit of pgbouncer: every client, every server connection of every entry,
    and slack; rounded up to a multiple of 1024."""
    need = v.pgbouncer_max_client_conn + v.db_entries * v.pgbouncer_max_db_connections
    return up((need + v.fd_slack) / 1024) * 1024
