"""PostgreSQL: connections per server (primary and each replica), memory, concurrency."""

from __future__ import annotations

from ..registry import BUF, buf, down, rule, up


@rule(
    "connections",
    "{web_hosts}*{pgbouncer_max_db_connections}",
    "pgbouncer docs: server connections = pools x databases x users, summed over bouncers.",
)
def pooled_server_connections(v):
    """Server connections the pools can open on one database server, the primary or any one
    replica: every web host has an entry for each server, so each server serves one pool per
    web host, at its cap (pool + reserve)."""
    return v.web_hosts * v.pgbouncer_max_db_connections


@rule(
    "connections",
    "{db_entries}*{pooled_server_connections}",
    "Summed over the servers: the primary and every replica.",
)
def pooled_server_connections_total(v):
    """Server connections the pools can open on every database server together."""
    return v.db_entries * v.pooled_server_connections


@rule(
    "connections",
    "UP(({pooled_server_connections}+{admin_connections})*" + BUF + ")"
    "+{superuser_reserved_connections}",
    "PostgreSQL docs: superuser_reserved_connections; WAL senders are outside "
    "max_connections since PostgreSQL 12.",
)
def max_connections_needed(v):
    """The pools and the admin sessions with the buffer, plus the superuser-reserved slots.
    Replication needs none: WAL senders have their own slots (max_wal_senders)."""
    need = up((v.pooled_server_connections + v.admin_connections) * buf(v))
    return need + v.superuser_reserved_connections


@rule(
    "connections",
    "IF({max_connections_cap}>0,MIN({max_connections_cap},{max_connections_needed}),"
    "{max_connections_needed})",
    "PostgreSQL docs, Hot Standby: a standby's max_connections must be >= the primary's.",
)
def postgresql_max_connections(v):
    """max_connections on the primary and on every replica alike (a hot standby refuses to
    start with less than its primary; each needs the same, one pool per web host): what is
    needed, unless a fixed cap is set, in which case the pool check says whether the pools
    still fit."""
    if v.max_connections_cap > 0:
        return min(v.max_connections_cap, v.max_connections_needed)
    return v.max_connections_needed


@rule(
    "connections",
    "{postgresql_max_connections}-{superuser_reserved_connections}-{admin_connections}",
    "PostgreSQL docs: superuser_reserved_connections.",
)
def pool_connection_room(v):
    """Connections left for the pools once superusers and admin sessions have theirs."""
    return v.postgresql_max_connections - v.superuser_reserved_connections - v.admin_connections


@rule("MB", "DOWN({db_ram_mb}/4)", "PGTune (le0pard/pgtune), web profile: RAM / 4.")
def postgresql_shared_buffers(v):
    """25% of RAM: PostgreSQL also reads through the OS page cache, so more rarely helps."""
    return down(v.db_ram_mb / 4)


@rule("MB", "DOWN({db_ram_mb}*3/4)", "PGTune, web profile: RAM x 3/4.")
def postgresql_effective_cache_size(v):
    """75% of RAM: a planner hint (shared buffers plus the page cache), allocates nothing."""
    return down(v.db_ram_mb * 3 / 4)


@rule(
    "MB",
    "MIN({maintenance_work_mem_cap_mb},DOWN({db_ram_mb}/16))",
    "PGTune: RAM / 16 (PGTune caps it at 8 GB and autovacuum_work_mem at 2 GB).",
)
def postgresql_maintenance_work_mem(v):
    """RAM / 16 for VACUUM and CREATE INDEX, capped: the role leaves autovacuum_work_mem at its
    default, so each autovacuum worker (3 by default) may use this much."""
    return min(v.maintenance_work_mem_cap_mb, down(v.db_ram_mb / 16))


@rule(
    "MB",
    "MAX(4,DOWN(({db_ram_mb}-{postgresql_shared_buffers})"
    "/(({postgresql_max_connections}+{pg_max_worker_processes})*3)))",
    "PGTune: (RAM - shared_buffers) / ((max_connections + max_worker_processes) x 3), "
    "at least 4 MB.",
)
def postgresql_work_mem(v):
    """Memory per sort or hash step: what shared_buffers leaves, spread over every backend
    (the pgbouncer-bounded max_connections, not the client count) at three steps each, and
    never below 4 MB."""
    backends = (v.postgresql_max_connections + v.pg_max_worker_processes) * 3
    return max(4, down((v.db_ram_mb - v.postgresql_shared_buffers) / backends))


@rule(
    "connections",
    "2*{db_cores}",
    "PostgreSQL wiki 'Number Of Database Connections'; HikariCP 'About Pool Sizing'.",
)
def db_active_connection_limit(v):
    """Busy connections a database server runs well at once: about two per core."""
    return 2 * v.db_cores


@rule("replicas", "{synchronous_standbys}", "PostgreSQL: synchronous_standby_names = ANY n (...).")
def postgresql_synchronous_standbys(v):
    """Replicas that must flush a commit's WAL before it returns (the role's
    synchronous_standby_names); 0: asynchronous replication."""
    return v.synchronous_standbys
