"""Predictions: capacity at the target utilisation and at saturation, and the target load."""

from __future__ import annotations

from ..registry import rule, up


@rule(
    "requests/s",
    "{web_worker_slots}*{target_utilisation}*1000/{mean_service_ms}",
    "Little's law: throughput = busy workers / service time.",
)
def host_worker_capacity_rps(v):
    """Requests per second one web host's workers serve with target_utilisation of them busy."""
    return v.web_worker_slots * v.target_utilisation * 1000 / v.mean_service_ms


@rule(
    "requests/s",
    "IF({web_cpu_ms_per_request}>0,"
    "{web_cores}*{target_utilisation}*1000/{web_cpu_ms_per_request},{host_worker_capacity_rps})",
    "Utilisation law over a web host's own cores: U x cores = X x CPU time per request.",
)
def host_cpu_capacity_rps(v):
    """Requests per second that keep target_utilisation of a web host's cores busy. More
    workers per core only help while the cores have time to spare: a worker waiting on the
    database costs no CPU, one rendering a page does."""
    if v.web_cpu_ms_per_request > 0:
        return v.web_cores * v.target_utilisation * 1000 / v.web_cpu_ms_per_request
    return v.host_worker_capacity_rps


@rule(
    "requests/s",
    "MIN({host_worker_capacity_rps},{host_cpu_capacity_rps})",
    "The tighter of a host's two bounds.",
)
def host_capacity_rps(v):
    """Requests per second one web host serves at the target utilisation."""
    return min(v.host_worker_capacity_rps, v.host_cpu_capacity_rps)


@rule("requests/s", "{web_hosts}*{host_capacity_rps}", "Little's law, over every web host.")
def worker_capacity_rps(v):
    """Requests per second the web tier serves at the target utilisation (its workers and
    its hosts' cores)."""
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
    "requests/s",
    "{web_hosts}*MIN({web_worker_slots}*1000/{mean_service_ms},"
    "IF({web_cpu_ms_per_request}>0,{web_cores}*1000/{web_cpu_ms_per_request},"
    "{web_worker_slots}*1000/{mean_service_ms}))",
    "Little's law and the utilisation law at U = 1, over every web host.",
)
def worker_saturation_rps(v):
    """Requests per second the web tier serves with every worker (or every web core) busy."""
    by_workers = v.web_worker_slots * 1000 / v.mean_service_ms
    by_cores = by_workers
    if v.web_cpu_ms_per_request > 0:
        by_cores = v.web_cores * 1000 / v.web_cpu_ms_per_request
    return v.web_hosts * min(by_workers, by_cores)


@rule(
    "requests/s",
    "IF({shared_cores}>0,({shared_cores}-{cpu_idle_cores})*1000/{cpu_ms_per_request},"
    "{worker_saturation_rps})",
    "Utilisation law over the shared cores at U = 1.",
)
def cpu_saturation_rps(v):
    """Requests per second that keep every shared core busy (the workers' bound otherwise)."""
    if v.shared_cores > 0:
        return (v.shared_cores - v.cpu_idle_cores) * 1000 / v.cpu_ms_per_request
    return v.worker_saturation_rps


@rule(
    "requests/s",
    "MIN({worker_saturation_rps},{cpu_saturation_rps})",
    "The knee of the throughput curve: 100% of the bottleneck.",
)
def saturation_rps(v):
    """The most the fleet can serve: past it, requests only queue (latency grows without
    bound while throughput stays flat). The step load's highest sustained rate measures it."""
    return min(v.worker_saturation_rps, v.cpu_saturation_rps)


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
    """Database transactions per second at that capacity (every server together)."""
    return v.capacity_rps * v.db_transactions_per_request


@rule(
    "fraction",
    "IF({db_replicas}>0,{primary_transaction_share},1)",
    "The router: writes and pinned reads on the primary, other reads on the replicas.",
)
def primary_share(v):
    """Share of the transactions the primary runs: all of them without a replica."""
    return v.primary_transaction_share if v.db_replicas > 0 else 1


@rule(
    "transactions/s",
    "{capacity_db_transactions_per_s}*{primary_share}+{router_status_queries_per_s}",
    "The survey mix and the router, with its status queries.",
)
def primary_db_transactions_per_s(v):
    """Transactions per second on the primary at capacity, the router's status queries
    included."""
    return v.capacity_db_transactions_per_s * v.primary_share + v.router_status_queries_per_s


@rule(
    "transactions/s",
    "IF({db_replicas}>0,{capacity_db_transactions_per_s}*(1-{primary_share})/{db_replicas}"
    "+{router_status_queries_per_s},0)",
    "The survey mix and the router; reads spread evenly over the replicas.",
)
def replica_db_transactions_per_s(v):
    """Transactions per second on each replica at capacity, the router's status queries
    included."""
    if v.db_replicas > 0:
        reads = v.capacity_db_transactions_per_s * (1 - v.primary_share) / v.db_replicas
        return reads + v.router_status_queries_per_s
    return 0


@rule(
    "connections",
    "{capacity_db_transactions_per_s}*{transaction_ms}/1000",
    "Little's law: L = lambda x W.",
)
def active_server_connections(v):
    """Server connections busy at once at that capacity (every server together)."""
    return v.capacity_db_transactions_per_s * v.transaction_ms / 1000


@rule(
    "connections",
    "MAX({primary_db_transactions_per_s},{replica_db_transactions_per_s})*{transaction_ms}/1000",
    "Little's law: L = lambda x W, on the busiest server.",
)
def busiest_server_active_connections(v):
    """Server connections busy at once at that capacity on the busiest database server."""
    busiest = max(v.primary_db_transactions_per_s, v.replica_db_transactions_per_s)
    return busiest * v.transaction_ms / 1000


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
    "surveys/h",
    "{concurrent_takers}*3600/{survey_cycle_s}",
    "Closed model: each taker finishes a survey per cycle.",
)
def offered_surveys_per_hour(v):
    """Surveys the target takers finish in an hour (takers an hour, one survey each)."""
    return v.concurrent_takers * 3600 / v.survey_cycle_s


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
    "transactions/s",
    "{offered_db_transactions_per_s}*{primary_share}+{router_status_queries_per_s}",
    "The survey mix and the router, with its status queries (at most).",
)
def offered_primary_db_transactions_per_s(v):
    """Transactions per second on the primary at the target load, the router's status
    queries counted at their most."""
    return v.offered_db_transactions_per_s * v.primary_share + v.router_status_queries_per_s


@rule(
    "connections",
    "{offered_db_transactions_per_s}*{transaction_ms}/1000",
    "Little's law: L = lambda x W.",
)
def offered_active_server_connections(v):
    """Server connections busy at once at the target load (every server together)."""
    return v.offered_db_transactions_per_s * v.transaction_ms / 1000


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
