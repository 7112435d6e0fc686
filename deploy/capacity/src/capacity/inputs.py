"""The model's inputs: one frozen dataclass, and the loader that reads an environment's files.

An environment is a folder deploy/<env>/ with `inventory.yml` (host counts), `capacity.yml` (what
a person states: host sizes, the load, the knobs) and, once `make calibrate` has run there,
`calibration.yml` (the service times measured on the fleet, with the machine they were measured
on), which is read over capacity.yml's service_times.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# deploy/, where every environment's folder lives (this file is deploy/capacity/src/capacity/).
DEPLOY_DIR = Path(__file__).resolve().parents[3]
CAPACITY_FILE = "capacity.yml"
CALIBRATION_FILE = "calibration.yml"
# The section of capacity.yml that is not inputs: published figures to set the outputs beside.
REFERENCE_SECTION = "reference"


def _input(section: str, unit: str, text: str, **default):
    return field(metadata={"section": section, "unit": unit, "help": text}, **default)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Everything the model needs about one environment. `inventory` fields come from the
    inventory (host counts), the others from `deploy/<env>/capacity.yml`, one section each,
    with `deploy/<env>/calibration.yml` (written by `make calibrate`) read over its
    service_times."""

    # Host counts, from deploy/<env>/inventory.yml.
    lb_hosts: int = _input("inventory", "hosts", "hosts in the lb group")
    web_hosts: int = _input("inventory", "hosts", "hosts in the web group")
    db_replicas: int = _input("inventory", "hosts", "hosts in the db_replica group")

    # What each host of a tier has (a VM's size, or what a local container may use).
    lb_cores: int = _input("hosts", "cores", "cores of a load balancer (one nginx worker each)")
    lb_ram_mb: int = _input("hosts", "MB", "RAM of a load balancer (recorded; no rule uses it)")
    web_cores: int = _input("hosts", "cores", "cores of a web host")
    web_ram_mb: int = _input("hosts", "MB", "RAM of a web host")
    db_cores: int = _input("hosts", "cores", "cores of a database host (primary and replicas)")
    db_ram_mb: int = _input("hosts", "MB", "RAM of a database host (primary and replicas)")
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
    primary_transaction_share: float = _input(
        "workload",
        "fraction",
        "share of transactions the primary runs when there are replicas: writes, and reads "
        "pinned to it until a replica has replayed the client's write",
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
    calibrated: bool = _input(
        "service_times", "", "true once `make calibrate` measured these", default=False
    )
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
    web_cpu_ms_per_request: float = _input(
        "service_times",
        "ms",
        "CPU time a request costs its web host (gunicorn, Django), where web hosts have cores of "
        "their own; 0: not stated, the workers alone bound a host",
        default=0,
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
    workers_per_core: float = _input(
        "web",
        "workers",
        "gunicorn workers per web core, plus one: 2 is gunicorn's (2 x cores) + 1; an I/O-bound "
        "app may use more (Caktus ran 8 per core)",
        default=2,
    )
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
    replica_status_ttl_s: float = _input(
        "web",
        "s",
        "how long a gunicorn process trusts what it last read of a replica's state and the "
        "primary's position (the router's status TTL): shorter notices a failed replica sooner, "
        "and costs each database server more status queries",
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
    new_sessions_per_client_hour: float = _input(
        "memory", "sessions/h", "sessions one client address may start per hour (more: 429)"
    )
    min_cache_mb: float = _input("memory", "MB", "smallest useful cache")

    # File descriptors.
    fd_hard_limit: int = _input("limits", "files", "hard open-file limit a service can get")
    fd_slack: int = _input("limits", "files", "descriptors a daemon holds besides connections")

    # Backups (pgBackRest): what the survey writes, measured, and the retention policy.
    wal_kb_per_submission: float = _input(
        "backups", "kB", "WAL one page submission writes (answers, response, indexes, page images)"
    )
    wal_compressed_percent: float = _input(
        "backups", "%", "archived WAL's size in the repository (zstd), of the WAL written"
    )
    db_kb_per_survey: float = _input(
        "backups", "kB", "database growth per survey taken (response, answers, their indexes)"
    )
    db_size_gb: float = _input("backups", "GB", "the database's size to plan the bucket for")
    backup_compressed_percent: float = _input(
        "backups", "%", "a full backup's size in the repository (zstd), of the database's"
    )
    backup_retention_full: int = _input(
        "backups", "backups", "full backups kept, with the WAL to restore to any point since"
    )
    backup_retention_diff: int = _input("backups", "backups", "differential backups kept")
    full_backup_every_days: int = _input(
        "backups", "days", "days between full backups: 7 (differentials between) or 1"
    )

    # Replication: synchronous commits, and what each one costs (measured side by side).
    synchronous_standbys: int = _input(
        "replication",
        "replicas",
        "replicas that must flush a commit's WAL before it returns (ANY n); 0: asynchronous",
    )
    sync_commit_ms: float = _input(
        "replication",
        "ms",
        "what a synchronous commit adds to a write transaction (measured: the p50 of a page "
        "POST with it and without it, in one run)",
    )

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
            positive += ("worker_rss_mb", "requests_per_page", "workers_per_core")
            positive += ("replica_status_ttl_s",)
            problems += [f"{name} must be above 0" for name in positive if getattr(self, name) <= 0]
            if self.primary_transaction_share > 1:
                problems.append("primary_transaction_share must be at most 1")
            if not 0 < self.pool_wait_probability < 1:
                problems.append("pool_wait_probability must be between 0 and 1")
            if self.shared_cores > 0 and self.cpu_ms_per_request <= 0:
                problems.append("cpu_ms_per_request must be above 0 when cores are shared")
            if 0 < self.shared_cores * self.target_utilisation <= self.cpu_idle_cores:
                problems.append(
                    f"cpu_idle_cores {self.cpu_idle_cores} leaves nothing of the shared cores "
                    f"at the target utilisation ({self.shared_cores} x {self.target_utilisation})"
                )
            if self.full_backup_every_days not in (1, 7):
                problems.append("full_backup_every_days must be 1 (daily) or 7 (weekly)")
            if self.backup_retention_full < 1:
                problems.append("backup_retention_full must keep at least one full backup")
            if self.synchronous_standbys > self.db_replicas:
                problems.append(
                    f"synchronous_standbys {self.synchronous_standbys} is more than the "
                    f"{self.db_replicas} replica(s): every write would wait forever"
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
    size = {name: len(hosts) for name, hosts in inventory_groups(path).items()}
    return {
        "lb_hosts": size.get("lb", 0),
        "web_hosts": size.get("web", 0),
        "db_replicas": size.get("db_replica", 0),
    }


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _merge(values: dict, path: Path, data: dict, sections: set[str] | None = None) -> None:
    """Put each `section: {name: value}` of `data` into `values`, refusing names that are not
    inputs of that section, and sections other than `sections` when it is given."""
    where = {f.name: f.metadata["section"] for f in dataclasses.fields(Inputs)}
    for section, entries in data.items():
        if sections is not None and section not in sections:
            raise ValueError(f"{path}: section {section!r} does not belong in this file")
        for key, value in (entries or {}).items():
            if where.get(key) != section:
                why = f"belongs in section {where[key]!r}" if key in where else "unknown"
                raise ValueError(f"{path}: {section}.{key} is not an input ({why})")
            values[key] = value


def load(env: str, deploy_dir: Path = DEPLOY_DIR, counts: dict[str, int] | None = None) -> Inputs:
    """Read deploy/<env>/capacity.yml with its calibration.yml over it, and count the hosts of
    deploy/<env>/inventory.yml; `counts` (e.g. {"db_replicas": 2}) replaces those counts."""
    env_dir = deploy_dir / env
    path = env_dir / CAPACITY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No capacity inputs for environment {env!r}: {path} is missing")
    values: dict = {**inventory_counts(env_dir / "inventory.yml"), **(counts or {})}
    data = read_yaml(path)
    data.pop(REFERENCE_SECTION, None)
    _merge(values, path, data)
    calibration = env_dir / CALIBRATION_FILE
    if calibration.is_file():
        measured = read_yaml(calibration)
        measured.pop("fingerprint", None)
        _merge(values, calibration, measured, sections={"service_times"})
    fields = dataclasses.fields(Inputs)
    missing = [f.name for f in fields if f.name not in values and f.default is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{path}: missing inputs: {', '.join(missing)}")
    return Inputs(**values)


@dataclass(frozen=True)
class Reference:
    """A published figure to set beside one of the model's values (capacity.yml: reference)."""

    output: str  # the model's name for the same quantity
    value: float
    why: str  # why the model's value differs


def load_reference(env: str, deploy_dir: Path = DEPLOY_DIR) -> tuple[str, list[Reference]]:
    """The source and the figures of capacity.yml's `reference` section, if it has one."""
    section = read_yaml(deploy_dir / env / CAPACITY_FILE).get(REFERENCE_SECTION) or {}
    figures = [Reference(**figure) for figure in section.get("figures") or []]
    return section.get("source", ""), figures
