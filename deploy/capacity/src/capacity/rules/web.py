"""gunicorn on the web hosts: workers, timeouts, open files."""

from __future__ import annotations

from ..registry import down, rule, up


@rule(
    "processes",
    "MIN(DOWN({workers_per_core}*{web_cores})+1,"
    "DOWN(({web_ram_mb}-{web_reserved_mb})/{worker_rss_mb}))",
    "gunicorn docs, Design, 'How many workers?': (2 x num_cores) + 1; Caktus (fabulaws' "
    "gunicorn_worker_multiplier): 8 per core.",
)
def app_workers(v):
    """gunicorn sync workers per web host: workers_per_core x cores + 1, by default gunicorn's
    (2 x cores) + 1, so a core always has a worker ready while another waits on the database.
    An app whose requests mostly wait (on the database, on Redis) can run more per core. Never
    more than the RAM left for workers holds."""
    by_ram = down((v.web_ram_mb - v.web_reserved_mb) / v.worker_rss_mb)
    return min(down(v.workers_per_core * v.web_cores) + 1, by_ram)


@rule(
    "requests",
    "{app_workers}*{gunicorn_threads}",
    "gunicorn docs: a sync worker serves one request at a time per thread.",
)
def web_worker_slots(v):
    """Requests one web host serves at once; also the Django connections per database alias."""
    return v.app_workers * v.gunicorn_threads


@rule(
    "s",
    "MIN({timeout_max_s},MAX({timeout_min_s},UP({timeout_multiple}*{slowest_p99_ms}/1000)))",
    "gunicorn settings: timeout (default 30 s); bounded by timeout_min_s/timeout_max_s.",
)
def app_timeout(v):
    """Seconds before gunicorn kills a silent worker: a multiple of the slowest p99, never below
    the floor (which stays above the app's own waits: 5 s database connect, 5 s pgbouncer
    query_wait_timeout, 1 s per Redis call) nor above the ceiling (a stuck worker is capacity
    lost)."""
    scaled = up(v.timeout_multiple * v.slowest_p99_ms / 1000)
    return min(v.timeout_max_s, max(v.timeout_min_s, scaled))


@rule(
    "s",
    "{app_timeout}",
    "nginx role: proxy_read_timeout = this + a grace, so gunicorn gives up first.",
)
def nginx_upstream_timeout(v):
    """nginx waits as long as gunicorn lets a request run (the role adds a few seconds)."""
    return v.app_timeout


@rule(
    "files",
    "UP(({fd_slack}+2*{app_workers}"
    "+{gunicorn_threads}*(1+{db_entries}+2*{redis_connections_per_request}))/1024)*1024",
    "Counted: arbiter pipes and heartbeat files, then one socket per connection.",
)
def app_nofile(v):
    """Open-file limit of the gunicorn unit (per process): the arbiter's two descriptors per
    worker, a worker's client socket, database and Redis connections per thread, and slack for
    libraries, logs and listen sockets; rounded up to a multiple of 1024."""
    per_thread = 1 + v.db_entries + 2 * v.redis_connections_per_request
    need = v.fd_slack + 2 * v.app_workers + v.gunicorn_threads * per_thread
    return up(need / 1024) * 1024


@rule(
    "s",
    "{replica_status_ttl_s}",
    "The app reads it as TALLY_REPLICA_STATUS_TTL (app/routing/replicas.py).",
)
def app_replica_status_ttl(v):
    """The router's status TTL, as the app role passes it to every gunicorn process."""
    return v.replica_status_ttl_s


@rule(
    "queries/s",
    "IF({db_replicas}>0,{web_hosts}*{app_workers}/{replica_status_ttl_s},0)",
    "The router (app/routing/replicas.py): one status query per process, server and TTL.",
)
def router_status_queries_per_s(v):
    """Status queries each database server answers for the read router with every process
    busy: a gunicorn process asks the primary for its position, and each replica it reads from
    for its replay and WAL receiver, once per status TTL. A process that serves fewer reads
    than that asks once per read, so at low load the queries per request are higher (and so
    is the CPU per request). During a graceful reload both generations of workers ask, twice
    as many for that moment. Without replicas there are none."""
    if v.db_replicas > 0:
        return v.web_hosts * v.app_workers / v.replica_status_ttl_s
    return 0
