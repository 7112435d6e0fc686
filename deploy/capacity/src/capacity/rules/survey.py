"""The survey mix: a taker's survey reduced to requests, service time and transactions."""

from __future__ import annotations

from ..registry import rule


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
    "IF({synchronous_standbys}>0,{sync_commit_ms},0)",
    "A synchronous commit waits for a standby's flush (measured side by side).",
)
def commit_wait_ms(v):
    """What a page's write waits for at commit: a standby's flush under synchronous replication
    (the calibration measures the service times on an asynchronous fleet), else nothing."""
    return v.sync_commit_ms if v.synchronous_standbys > 0 else 0


@rule(
    "ms",
    "({start_requests_per_survey}*{start_ms}"
    "+{pages_per_survey}*({requests_per_page}-1)*{page_get_ms}"
    "+{pages_per_survey}*({page_post_ms}+{commit_wait_ms})+{results_views_per_survey}*{results_ms})"
    "/{requests_per_survey}",
    "Mix-weighted mean of the measured service times (calibration run), commit waits added.",
)
def mean_service_ms(v):
    """Mean service time of a request, weighted by how often each endpoint is hit in a survey:
    one POST per page (and its commit's wait), the page's other requests are GETs."""
    total = (
        v.start_requests_per_survey * v.start_ms
        + v.pages_per_survey * (v.requests_per_page - 1) * v.page_get_ms
        + v.pages_per_survey * (v.page_post_ms + v.commit_wait_ms)
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
    "ms",
    "{db_transaction_ms}+{commit_wait_ms}/{db_transactions_per_page}",
    "A page's one write transaction waits at commit; spread over its transactions.",
)
def transaction_ms(v):
    """Mean time a transaction holds a server connection, a page's commit wait included."""
    return v.db_transaction_ms + v.commit_wait_ms / v.db_transactions_per_page


@rule(
    "fraction",
    "{db_transactions_per_request}*{transaction_ms}/{mean_service_ms}",
    "Little's law per worker: share of a request's time spent holding a server connection.",
)
def db_time_share(v):
    """Share of a busy worker's time spent inside a database transaction, i.e. holding a
    pgbouncer server connection."""
    return v.db_transactions_per_request * v.transaction_ms / v.mean_service_ms


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
    "1+{db_replicas}",
    "pgbouncer/pgbouncer.ini.j2: [databases] has the primary and one entry per replica.",
)
def db_entries(v):
    """pgbouncer database entries per web host, each with its own pool and its own Django
    connection per worker: the primary, plus one for every replica."""
    return 1 + v.db_replicas
