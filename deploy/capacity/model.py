"""The capacity model: inputs, the rules that size every tier, and the checks.

Each rule is one function that computes its value from the inputs and the earlier rules (the
namespace `v`); its decorator carries the same rule as a spreadsheet formula, so the two forms
sit side by side. The spreadsheet writer emits the formula; the tests recalculate the workbook
and compare every cell with the Python value.

Formula templates name inputs and outputs in braces ({web_cores}); the writer replaces each with
the cell that holds it. Two macros keep binary float noise from moving a rounding step (2.9999999
and 3.0000001 must both round to 3 in Python, Excel and LibreOffice alike):
UP(x) is ROUNDUP(ROUND(x,6),0) and DOWN(x) is INT(ROUND(x,6)); `up` and `down` are their
Python twins.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import yaml

DEPLOY_DIR = Path(__file__).resolve().parent.parent


def up(x: float) -> int:
    """Round up to an integer, after rounding away float noise (the UP() macro)."""
    return math.ceil(round(x, 6))


def down(x: float) -> int:
    """Round down to an integer, after rounding away float noise (the DOWN() macro)."""
    return math.floor(round(x, 6))


# --- Inputs ------------------------------------------------------------------------------------


def _input(section: str, unit: str, text: str):
    return field(metadata={"section": section, "unit": unit, "help": text})


@dataclass(frozen=True)
class Inputs:
    """Everything the model needs about one environment. `inventory` fields come from the
    inventory (host counts), the others from `deploy/<env>/capacity.yml`, one section each."""

    # Host counts, from deploy/<env>/inventory.yml.
    lb_hosts: int = _input("inventory", "hosts", "hosts in the lb group")
    web_hosts: int = _input("inventory", "hosts", "hosts in the web group")
    db_replicas: int = _input("inventory", "hosts", "hosts in the db_replica group")

    # What each host of a tier has (a VM's size, or what a local container may use).
    lb_cores: int = _input("hosts", "cores", "cores of a load balancer (one nginx worker each)")
    lb_ram_mb: int = _input("hosts", "MB", "RAM of a load balancer (recorded; no rule uses it)")
    web_cores: int = _input("hosts", "cores", "cores of a web host")
    web_ram_mb: int = _input("hosts", "MB", "RAM of a web host")
    db_cores: int = _input("hosts", "cores", "cores of a database host (primary and replica)")
    db_ram_mb: int = _input("hosts", "MB", "RAM of a database host (primary and replica)")
    cache_cores: int = _input("hosts", "cores", "cores of the cache host (recorded; Redis uses 1)")
    cache_ram_mb: int = _input("hosts", "MB", "RAM of the cache host (both Redis servers)")
    shared_cores: float = _input(
        "hosts",
        "cores",
        "cores every host shares, load generator included, when all are containers on one "
        "machine; 0: each host has its own",
    )

    # The load to plan for.
    concurrent_takers: float = _input("workload", "takers", "survey takers active at once")
    think_time_s: float = _input("workload", "s", "time a taker spends on a page before submitting")
    pages_per_survey: float = _input("workload", "pages", "question pages plus the review page")
    requests_per_page: float = _input(
        "workload", "requests", "requests per page: its POST, and the GET it redirects to"
    )
    db_transactions_per_page: float = _input(
        "workload", "transactions", "database transactions of one page, GET and POST together"
    )
    start_requests_per_survey: float = _input(
        "workload",
        "requests",
        "requests outside the pages: landing GET, starting POST, closing page",
    )
    results_views_per_survey: float = _input(
        "workload", "requests", "results pages viewed per survey taken (a share of takers)"
    )
    redis_connections_per_request: float = _input(
        "workload", "connections", "connections a request holds to each Redis server"
    )
    client_connections_per_taker: float = _input(
        "workload", "connections", "connections a browser keeps open to the load balancer"
    )
    survey_starts_per_day: float = _input(
        "workload", "surveys", "surveys started on an average day (sizes the session store)"
    )

    # Measured at the web tier by a calibration run; placeholders until `calibrated` is true.
    calibrated: bool = _input("service_times", "", "true once a calibration run wrote these")
    page_get_ms: float = _input("service_times", "ms", "mean service time: page GET")
    page_get_p99_ms: float = _input("service_times", "ms", "p99 service time: page GET")
    page_post_ms: float = _input("service_times", "ms", "mean service time: page POST")
    page_post_p99_ms: float = _input("service_times", "ms", "p99 service time: page POST")
    start_ms: float = _input("service_times", "ms", "mean service time: start request")
    start_p99_ms: float = _input("service_times", "ms", "p99 service time: start request")
    start_db_transactions: float = _input(
        "service_times", "transactions", "database transactions per start request"
    )
    results_ms: float = _input("service_times", "ms", "mean service time: results page")
    results_p99_ms: float = _input("service_times", "ms", "p99 service time: results page")
    results_db_transactions: float = _input(
        "service_times", "transactions", "database transactions per results page"
    )
    db_transaction_ms: float = _input(
        "service_times", "ms", "mean time a transaction holds a server connection"
    )
    cpu_ms_per_request: float = _input(
        "service_times",
        "ms",
        "CPU time of every host (and the load generator, when cores are shared) per request",
    )
    cpu_idle_cores: float = _input(
        "service_times",
        "cores",
        "CPU the fleet uses at rest, its monitoring included (where cores are shared)",
    )

    # What "good enough" means.
    target_utilisation: float = _input(
        "objectives", "fraction", "busy share of gunicorn workers to plan for (0.5-0.7)"
    )
    latency_p95_ms: float = _input("objectives", "ms", "latency objective: p95 of all requests")

    # The web tier.
    gunicorn_threads: int = _input("web", "threads", "threads per gunicorn worker (1: sync)")
    worker_rss_mb: float = _input("web", "MB", "resident memory of one gunicorn worker")
    web_reserved_mb: float = _input(
        "web", "MB", "web host RAM kept for the OS, pgbouncer and the gunicorn arbiter"
    )
    timeout_multiple: float = _input("web", "x", "gunicorn timeout as a multiple of the worst p99")
    timeout_min_s: float = _input("web", "s", "lowest gunicorn timeout")
    timeout_max_s: float = _input("web", "s", "highest gunicorn timeout")
    reload_overlap: float = _input(
        "web", "x", "worker generations alive at once during a graceful reload (HUP)"
    )

    # Connection limits.
    connection_buffer_percent: float = _input(
        "connections", "%", "headroom added to every connection count"
    )
    min_server_pool: int = _input("connections", "connections", "smallest pgbouncer pool")
    pool_wait_probability: float = _input(
        "connections",
        "fraction",
        "chance, with every worker busy, that a transaction finds its pool full and waits",
    )
    pool_admin_clients: int = _input(
        "connections", "connections", "pgbouncer clients besides gunicorn (migrations, stats)"
    )
    superuser_reserved_connections: int = _input(
        "connections", "connections", "PostgreSQL superuser_reserved_connections (default 3)"
    )
    admin_connections: int = _input(
        "connections", "connections", "direct PostgreSQL sessions: Ansible, monitoring, psql"
    )
    max_connections_cap: int = _input(
        "connections", "connections", "fixed max_connections (managed database); 0: none"
    )
    pg_max_worker_processes: int = _input(
        "connections", "processes", "PostgreSQL max_worker_processes (default 8; not changed)"
    )
    maintenance_work_mem_cap_mb: int = _input(
        "connections", "MB", "cap on maintenance_work_mem (each autovacuum worker may use it)"
    )
    redis_admin_clients: int = _input(
        "connections", "connections", "Redis clients besides gunicorn (redis-cli, monitoring)"
    )

    # Memory of the cache host.
    redis_memory_share_percent: float = _input(
        "memory", "%", "share of cache host RAM both Redis data sets may use together"
    )
    bytes_per_session: float = _input(
        "memory", "bytes", "a stored session, Redis overhead included"
    )
    session_age_days: float = _input("memory", "days", "session lifetime (SESSION_COOKIE_AGE)")
    session_headroom_percent: float = _input("memory", "%", "headroom over the sessions' size")
    min_cache_mb: float = _input("memory", "MB", "smallest useful cache")

    # File descriptors.
    fd_hard_limit: int = _input("limits", "files", "hard open-file limit a service can get")
    fd_slack: int = _input("limits", "files", "descriptors a daemon holds besides connections")

    def __post_init__(self):
        problems = []
        for f in numeric_fields():
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{f.name} must be a number, not {value!r}")
            elif value < 0:
                problems.append(f"{f.name} must not be negative ({value})")
        if not problems:
            positive = ("web_hosts", "lb_hosts", "lb_cores", "web_cores", "db_ram_mb")
            positive += ("cache_ram_mb", "page_get_ms", "page_post_ms", "start_ms", "results_ms")
            positive += ("pages_per_survey", "target_utilisation", "gunicorn_threads")
            positive += ("worker_rss_mb", "requests_per_page")
            problems += [f"{name} must be above 0" for name in positive if getattr(self, name) <= 0]
            if not 0 < self.pool_wait_probability < 1:
                problems.append("pool_wait_probability must be between 0 and 1")
            if self.shared_cores > 0 and self.cpu_ms_per_request <= 0:
                problems.append("cpu_ms_per_request must be above 0 when cores are shared")
            if 0 < self.shared_cores * self.target_utilisation <= self.cpu_idle_cores:
                problems.append(
                    f"cpu_idle_cores {self.cpu_idle_cores} leaves nothing of the shared cores "
                    f"at the target utilisation ({self.shared_cores} x {self.target_utilisation})"
                )
            if self.requests_per_page < 1:
                problems.append("requests_per_page must be at least 1 (the POST)")
            if self.target_utilisation > 1:
                problems.append(f"target_utilisation must be at most 1 ({self.target_utilisation})")
            if self.web_ram_mb - self.web_reserved_mb < self.worker_rss_mb:
                problems.append(
                    f"a web host's RAM ({self.web_ram_mb} MB) minus web_reserved_mb "
                    f"({self.web_reserved_mb}) leaves no room for one worker "
                    f"of {self.worker_rss_mb} MB"
                )
        if problems:
            raise ValueError("Invalid capacity inputs:\n  " + "\n  ".join(problems))


def numeric_fields() -> list[dataclasses.Field]:
    """The inputs that rules read (every field but the `calibrated` flag)."""
    return [f for f in dataclasses.fields(Inputs) if f.name != "calibrated"]


def inventory_groups(path: Path) -> dict[str, set[str]]:
    """Every group of an Ansible YAML inventory with its hosts, children's hosts included."""
    groups: dict[str, set[str]] = {}

    def walk(name: str, group: dict) -> set[str]:
        group = group or {}
        hosts = set(group.get("hosts") or {})
        for child, body in (group.get("children") or {}).items():
            hosts |= walk(child, body)
        groups[name] = groups.get(name, set()) | hosts
        return hosts

    walk("all", yaml.safe_load(path.read_text())["all"])
    return groups


def inventory_counts(path: Path) -> dict[str, int]:
    """Count the hosts of the groups the model needs in an Ansible YAML inventory."""
    groups = inventory_groups(path)
    size = {name: len(hosts) for name, hosts in groups.items()}
    return {
        "lb_hosts": size.get("lb", 0),
        "web_hosts": size.get("web", 0),
        "db_replicas": size.get("db_replica", 0),
    }


def load(env: str, deploy_dir: Path = DEPLOY_DIR) -> Inputs:
    """Read deploy/<env>/capacity.yml and count hosts in deploy/<env>/inventory.yml."""
    path = deploy_dir / env / "capacity.yml"
    if not path.is_file():
        raise FileNotFoundError(f"No capacity inputs for environment {env!r}: {path} is missing")
    data = yaml.safe_load(path.read_text()) or {}
    values = inventory_counts(deploy_dir / env / "inventory.yml")
    sections = {f.name: f.metadata["section"] for f in dataclasses.fields(Inputs)}
    for section, entries in data.items():
        for key, value in (entries or {}).items():
            if sections.get(key) != section:
                where = f"belongs in section {sections[key]!r}" if key in sections else "unknown"
                raise ValueError(f"{path}: {section}.{key} is not an input ({where})")
            values[key] = value
    missing = [name for name in sections if name not in values]
    if missing:
        raise ValueError(f"{path}: missing inputs: {', '.join(missing)}")
    return Inputs(**values)


# --- Rules -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    unit: str
    formula: str  # the spreadsheet form, over {names}
    source: str
    compute: Callable[[SimpleNamespace], float]

    @property
    def why(self) -> str:
        return inspect.getdoc(self.compute) or ""


RULES: list[Rule] = []


def rule(unit: str, formula: str, source: str):
    """Register the decorated function as a rule; `formula` is its spreadsheet form."""

    def register(compute):
        RULES.append(Rule(compute.__name__, unit, formula, source, compute))
        return compute

    return register


BUF = "(1+{connection_buffer_percent}/100)"


def buf(v) -> float:
    return 1 + v.connection_buffer_percent / 100


def critbinom(trials: int, p: float, alpha: float) -> int:
    """The spreadsheet's CRITBINOM: the smallest k with P(Binomial(trials, p) <= k) >= alpha.
    Terms in log space, so thousands of trials do not overflow a float."""
    n = int(trials)
    if p <= 0:
        return 0
    if p >= 1:
        return n
    cumulative = 0.0
    for k in range(n + 1):
        log_term = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        cumulative += math.exp(log_term + k * math.log(p) + (n - k) * math.log1p(-p))
        if cumulative >= alpha - 1e-12:
            return k
    return n


# The workload, reduced to one survey.


@rule(
    "requests",
    "{start_requests_per_survey}+{pages_per_survey}*{requests_per_page}+{results_views_per_survey}",
    "Counted from the survey flow: start, then each page's GET and POST, then results.",
)
def requests_per_survey(v):
    """Requests one taker makes for one survey: starting it, every page, the results views."""
    pages = v.pages_per_survey * v.requests_per_page
    return v.start_requests_per_survey + pages + v.results_views_per_survey


@rule(
    "ms",
    "({start_requests_per_survey}*{start_ms}"
    "+{pages_per_survey}*({requests_per_page}-1)*{page_get_ms}"
    "+{pages_per_survey}*{page_post_ms}+{results_views_per_survey}*{results_ms})"
    "/{requests_per_survey}",
    "Mix-weighted mean of the measured service times (calibration run).",
)
def mean_service_ms(v):
    """Mean service time of a request, weighted by how often each endpoint is hit in a survey:
    one POST per page, the page's other requests are GETs."""
    total = (
        v.start_requests_per_survey * v.start_ms
        + v.pages_per_survey * (v.requests_per_page - 1) * v.page_get_ms
        + v.pages_per_survey * v.page_post_ms
        + v.results_views_per_survey * v.results_ms
    )
    return total / v.requests_per_survey


@rule(
    "transactions",
    "({pages_per_survey}*{db_transactions_per_page}"
    "+{start_requests_per_survey}*{start_db_transactions}"
    "+{results_views_per_survey}*{results_db_transactions})/{requests_per_survey}",
    "Counted from the survey flow (transactions per page and per endpoint).",
)
def db_transactions_per_request(v):
    """Mean database transactions per request over a survey."""
    per_survey = (
        v.pages_per_survey * v.db_transactions_per_page
        + v.start_requests_per_survey * v.start_db_transactions
        + v.results_views_per_survey * v.results_db_transactions
    )
    return per_survey / v.requests_per_survey


@rule(
    "fraction",
    "{db_transactions_per_request}*{db_transaction_ms}/{mean_service_ms}",
    "Little's law per worker: share of a request's time spent holding a server connection.",
)
def db_time_share(v):
    """Share of a busy worker's time spent inside a database transaction, i.e. holding a
    pgbouncer server connection."""
    return v.db_transactions_per_request * v.db_transaction_ms / v.mean_service_ms


@rule(
    "ms",
    "MAX({page_get_p99_ms},{page_post_p99_ms},{start_p99_ms},{results_p99_ms})",
    "Calibration run.",
)
def slowest_p99_ms(v):
    """The slowest endpoint's p99 service time: what the timeout must comfortably exceed."""
    return max(v.page_get_p99_ms, v.page_post_p99_ms, v.start_p99_ms, v.results_p99_ms)


@rule(
    "entries",
    "1+MIN({db_replicas},1)",
    "pgbouncer/pgbouncer.ini.j2: [databases] has the primary and the first replica.",
)
def db_entries(v):
    """pgbouncer database entries per web host, each with its own pool and its own Django
    connection per worker: the primary, plus one for the replica if there is one."""
    return 1 + min(v.db_replicas, 1)


# gunicorn.


@rule(
    "processes",
    "MIN(2*{web_cores}+1,DOWN(({web_ram_mb}-{web_reserved_mb})/{worker_rss_mb}))",
    "gunicorn docs, Design, 'How many workers?': (2 x num_cores) + 1.",
)
def app_workers(v):
    """gunicorn sync workers per web host: (2 x cores) + 1, so a core always has a worker ready
    while another waits on the database, unless the RAM left for workers holds fewer."""
    by_ram = down((v.web_ram_mb - v.web_reserved_mb) / v.worker_rss_mb)
    return min(2 * v.web_cores + 1, by_ram)


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


# pgbouncer, one per web host.


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
    (primary, replica) gets this pool, so either server can take the whole host's load."""
    need = critbinom(v.web_worker_slots, min(1.0, v.db_time_share), 1 - v.pool_wait_probability)
    return min(v.web_worker_slots, max(v.min_server_pool, need))


@rule(
    "connections",
    "MIN({pgbouncer_default_pool_size},"
    "UP({web_worker_slots}*{target_utilisation}*{db_time_share}))",
    "pgbouncer docs: min_pool_size keeps connections open.",
)
def pgbouncer_min_pool_size(v):
    """Server connections kept open when idle: the mean number in use at the target load, so
    steady traffic never waits for a connection to be set up."""
    mean_busy = up(v.web_worker_slots * v.target_utilisation * v.db_time_share)
    return min(v.pgbouncer_default_pool_size, mean_busy)


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


# PostgreSQL, the same settings on the primary and the replica.


@rule(
    "connections",
    "{web_hosts}*{pgbouncer_max_db_connections}",
    "pgbouncer docs: server connections = pools x databases x users, summed over bouncers.",
)
def pooled_server_connections(v):
    """Server connections the pools can open on one database server: each web host's entry
    for that server, at its cap (pool + reserve)."""
    return v.web_hosts * v.pgbouncer_max_db_connections


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
    """max_connections on the primary and the replica alike (a hot standby refuses to start
    with less than its primary): what is needed, unless a fixed cap is set, in which case the
    pool check below says whether the pools still fit."""
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


# Redis: a cache server and a session server on the cache host.


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


# nginx on the load balancers.


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


# Predictions: capacity at the target utilisation, and the target load.


@rule(
    "requests/s",
    "{web_worker_slots}*{target_utilisation}*1000/{mean_service_ms}",
    "Little's law: throughput = busy workers / service time.",
)
def host_capacity_rps(v):
    """Requests per second one web host serves with target_utilisation of its workers busy."""
    return v.web_worker_slots * v.target_utilisation * 1000 / v.mean_service_ms


@rule("requests/s", "{web_hosts}*{host_capacity_rps}", "Little's law, over every web host.")
def worker_capacity_rps(v):
    """Requests per second the web tier's workers serve at the target utilisation."""
    return v.web_hosts * v.host_capacity_rps


@rule(
    "requests/s",
    "IF({shared_cores}>0,"
    "({shared_cores}*{target_utilisation}-{cpu_idle_cores})*1000/{cpu_ms_per_request},"
    "{worker_capacity_rps})",
    "Utilisation law over the shared cores: U x cores = idle + X x CPU time per request.",
)
def cpu_capacity_rps(v):
    """Where every host shares a few cores (the local fleet), those cores run out before the
    workers do: requests per second at target_utilisation of the shared cores, after what the
    fleet uses at rest. Hosts with cores of their own are bounded by their workers instead."""
    if v.shared_cores > 0:
        usable = v.shared_cores * v.target_utilisation - v.cpu_idle_cores
        return usable * 1000 / v.cpu_ms_per_request
    return v.worker_capacity_rps


@rule(
    "requests/s",
    "MIN({worker_capacity_rps},{cpu_capacity_rps})",
    "The tighter of the two bounds.",
)
def capacity_rps(v):
    """Requests per second the fleet serves at the target utilisation."""
    return min(v.worker_capacity_rps, v.cpu_capacity_rps)


@rule(
    "submissions/s",
    "{capacity_rps}*{pages_per_survey}/{requests_per_survey}",
    "The survey mix: one POST per page.",
)
def capacity_submissions_per_s(v):
    """Page submissions (POSTs) per second at that capacity."""
    return v.capacity_rps * v.pages_per_survey / v.requests_per_survey


@rule(
    "transactions/s",
    "{capacity_rps}*{db_transactions_per_request}",
    "The survey mix.",
)
def capacity_db_transactions_per_s(v):
    """Database transactions per second at that capacity (primary and replica together)."""
    return v.capacity_rps * v.db_transactions_per_request


@rule(
    "connections",
    "{capacity_db_transactions_per_s}*{db_transaction_ms}/1000",
    "Little's law: L = lambda x W.",
)
def active_server_connections(v):
    """Server connections busy at once at that capacity (both servers together)."""
    return v.capacity_db_transactions_per_s * v.db_transaction_ms / 1000


@rule(
    "s",
    "{pages_per_survey}*{think_time_s}+{requests_per_survey}*{mean_service_ms}/1000",
    "Closed model: a taker's cycle is think time plus response time.",
)
def survey_cycle_s(v):
    """Time a taker needs for one survey: thinking on each page plus every response. Response
    time is taken as the service time (no queueing), which overstates the offered load."""
    return v.pages_per_survey * v.think_time_s + v.requests_per_survey * v.mean_service_ms / 1000


@rule(
    "requests/s",
    "{concurrent_takers}*{requests_per_survey}/{survey_cycle_s}",
    "Closed model (Little's law): rate = users / (think time + response time).",
)
def offered_rps(v):
    """Requests per second the target takers send."""
    return v.concurrent_takers * v.requests_per_survey / v.survey_cycle_s


@rule(
    "submissions/s",
    "{offered_rps}*{pages_per_survey}/{requests_per_survey}",
    "The survey mix: one POST per page.",
)
def offered_submissions_per_s(v):
    """Page submissions per second the target takers send."""
    return v.offered_rps * v.pages_per_survey / v.requests_per_survey


@rule(
    "transactions/s",
    "{offered_rps}*{db_transactions_per_request}",
    "The survey mix.",
)
def offered_db_transactions_per_s(v):
    """Database transactions per second at the target load."""
    return v.offered_rps * v.db_transactions_per_request


@rule(
    "connections",
    "{offered_db_transactions_per_s}*{db_transaction_ms}/1000",
    "Little's law: L = lambda x W.",
)
def offered_active_server_connections(v):
    """Server connections busy at once at the target load (both servers together)."""
    return v.offered_db_transactions_per_s * v.db_transaction_ms / 1000


@rule(
    "fraction",
    "{offered_rps}*{mean_service_ms}/1000/({web_hosts}*{web_worker_slots})",
    "Utilisation law: U = X x S / servers.",
)
def offered_utilisation(v):
    """Share of the web tier's workers busy at the target load."""
    return v.offered_rps * v.mean_service_ms / 1000 / (v.web_hosts * v.web_worker_slots)


@rule(
    "hosts",
    "MAX(1,UP({offered_rps}/{host_capacity_rps}))",
    "Little's law: hosts = offered load / one host's capacity.",
)
def web_hosts_needed(v):
    """Web hosts the target load needs at the target utilisation (add one to survive a loss)."""
    return max(1, up(v.offered_rps / v.host_capacity_rps))


@rule(
    "connections",
    "2*{db_cores}",
    "PostgreSQL wiki 'Number Of Database Connections'; HikariCP 'About Pool Sizing'.",
)
def db_active_connection_limit(v):
    """Busy connections a database server runs well at once: about two per core."""
    return 2 * v.db_cores


# --- Checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    used: str  # an output or input that must not exceed...
    limit: str  # ...this one
    explain: Callable[[SimpleNamespace], str]

    @property
    def why(self) -> str:
        return inspect.getdoc(self.explain) or ""

    @property
    def formula(self) -> str:
        return f'IF(ROUND({{{self.used}}},6)<=ROUND({{{self.limit}}},6),"ok","FAIL")'


CHECKS: list[Check] = []


def check(used: str, limit: str, name: str | None = None):
    """Register a check that `used` <= `limit`; the function words the failure."""

    def register(explain):
        CHECKS.append(Check(name or explain.__name__, used, limit, explain))
        return explain

    return register


def num(x: float) -> str:
    """A number for messages and tables: integers plainly, others to two decimals."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


@check("pooled_server_connections", "pool_connection_room")
def pools_fit_max_connections(v):
    """pgbouncer pools fit in max_connections minus the reserved connections."""
    return (
        f"pgbouncer pools can open {num(v.pooled_server_connections)} server connections per "
        f"database server ({num(v.web_hosts)} web hosts x pgbouncer_max_db_connections "
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


@check("active_server_connections", "db_active_connection_limit")
def db_concurrency_fits_cores(v):
    """Busy database connections at capacity stay within about two per database core."""
    return (
        f"at capacity {num(v.active_server_connections)} server connections are busy at once, "
        f"more than 2 x {num(v.db_cores)} database cores = {num(v.db_active_connection_limit)}"
    )


# --- Evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    inputs: Inputs
    values: dict[str, float]

    def failures(self) -> list[str]:
        """A message for every failed check, naming the numbers."""
        v = SimpleNamespace(**self.values)
        return [
            f"{c.name}: {c.explain(v)}"
            for c in CHECKS
            if round(self.values[c.used], 6) > round(self.values[c.limit], 6)
        ]

    def ansible_vars(self) -> dict[str, int | str]:
        """The role variables the model sets, in the units the services accept."""
        return {name: fmt(self.values[name]) for name, fmt in ANSIBLE_VARS.items()}

    def predictions(self) -> dict:
        """What the load tests check: capacity at the target utilisation and the target load."""
        i, v = self.inputs, self.values
        return {
            "requests_per_s": round(v["capacity_rps"], 3),
            "worker_bound_requests_per_s": round(v["worker_capacity_rps"], 3),
            "cpu_bound_requests_per_s": round(v["cpu_capacity_rps"], 3),
            "submissions_per_s": round(v["capacity_submissions_per_s"], 3),
            "active_server_connections": round(v["active_server_connections"], 3),
            "db_transactions_per_s": round(v["capacity_db_transactions_per_s"], 3),
            "web_hosts_needed": v["web_hosts_needed"],
            "web_hosts": i.web_hosts,
            "target_utilisation": i.target_utilisation,
            "latency_objective_p95_ms": i.latency_p95_ms,
            "target": {
                "concurrent_takers": i.concurrent_takers,
                "think_time_s": i.think_time_s,
                "requests_per_s": round(v["offered_rps"], 3),
                "submissions_per_s": round(v["offered_submissions_per_s"], 3),
                "db_transactions_per_s": round(v["offered_db_transactions_per_s"], 3),
                "active_server_connections": round(v["offered_active_server_connections"], 3),
                "utilisation": round(v["offered_utilisation"], 4),
            },
            "service_times": {
                "calibrated": i.calibrated,
                **{
                    name: getattr(i, name)
                    for name in (
                        "page_get_ms",
                        "page_get_p99_ms",
                        "page_post_ms",
                        "page_post_p99_ms",
                        "start_ms",
                        "start_p99_ms",
                        "results_ms",
                        "results_p99_ms",
                        "db_transaction_ms",
                        "cpu_ms_per_request",
                        "cpu_idle_cores",
                    )
                },
                "mean_service_ms": round(v["mean_service_ms"], 3),
            },
        }


def evaluate(inputs: Inputs) -> Model:
    """Apply every rule in order; each sees the inputs and the rules before it."""
    v = SimpleNamespace(**{f.name: getattr(inputs, f.name) for f in numeric_fields()})
    for r in RULES:
        setattr(v, r.name, r.compute(v))
    return Model(inputs, dict(vars(v)))


def _integer(x: float) -> int:
    return int(x)


def _pg_mb(x: float) -> str:
    return f"{int(x)}MB"


def _redis_mb(x: float) -> str:
    return f"{int(x)}mb"


# Role variable -> how its value is written (the names are the roles' defaults).
ANSIBLE_VARS: dict[str, Callable[[float], int | str]] = {
    "app_workers": _integer,
    "app_timeout": _integer,
    "app_nofile": _integer,
    "common_limit_nofile": _integer,
    "nginx_worker_connections": _integer,
    "nginx_worker_rlimit_nofile": _integer,
    "nginx_upstream_timeout": _integer,
    "pgbouncer_max_client_conn": _integer,
    "pgbouncer_default_pool_size": _integer,
    "pgbouncer_min_pool_size": _integer,
    "pgbouncer_reserve_pool_size": _integer,
    "pgbouncer_max_db_connections": _integer,
    "pgbouncer_nofile": _integer,
    "postgresql_max_connections": _integer,
    "postgresql_shared_buffers": _pg_mb,
    "postgresql_effective_cache_size": _pg_mb,
    "postgresql_work_mem": _pg_mb,
    "postgresql_maintenance_work_mem": _pg_mb,
    "redis_cache_maxmemory": _redis_mb,
    "redis_sessions_maxmemory": _redis_mb,
    "redis_cache_maxclients": _integer,
    "redis_sessions_maxclients": _integer,
}
