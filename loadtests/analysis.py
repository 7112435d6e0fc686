"""From a run's raw files to per-stage measurements and verdicts (no plotting here).

Files of a run folder: plan.json (what was offered), requests.csv (every request: time, name,
response and in-app time, ok), stages.json (when each stage began), samples.csv (the fleet's
samplers) and ledger.csv (the acknowledged writes, reconciled by ledger.py).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.plan import CAPACITY_STAGE, ENDPOINT_OF, SUBMISSIONS, Plan

CAPACITY_TOLERANCE = 0.15
# The verdicts that rest on calibrated service times: on another machine they are shown as
# UNCALIBRATED, neither passed nor failed.
CAPACITY_VERDICTS = {
    "saturation throughput",
    "capacity at the target utilisation",
    "target within the predicted capacity",
}
GENERATOR_CPU_LIMIT = 0.9  # of one core per Locust process
GENERATOR_BUSY_SHARE = 0.1  # of the samples may be above that limit
ACHIEVED_SHARE = 0.9  # of the closed model's expected rate, or the generator lagged


@dataclass
class Request:
    time: float
    name: str
    response_ms: float
    server_ms: float | None
    ok: bool
    status: int = 0  # 0: no response (a connection error or a timeout)
    release: str = ""  # the X-Tally-Release that answered
    retry_after: str = ""  # the Retry-After header, if any

    @property
    def started(self) -> float:
        """When it was sent (`time` is when its answer came)."""
        return self.time - self.response_ms / 1000


def read_requests(path: Path) -> list[Request]:
    with path.open() as f:
        return [
            Request(
                float(row["time"]),
                row["name"],
                float(row["response_ms"]),
                float(row["server_ms"]) if row["server_ms"] else None,
                row["ok"] == "True",
                int(row.get("status") or 0),
                row.get("release") or "",
                row.get("retry_after") or "",
            )
            for row in csv.DictReader(f)
        ]


def read_samples(path: Path) -> list[tuple[float, str, str, float]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [
            (float(r["time"]), r["host"], r["metric"], float(r["value"])) for r in csv.DictReader(f)
        ]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class StageResult:
    label: str
    users: int
    offered_rps: float  # planned, at the model's service time
    start: float
    end: float
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    submissions_per_s: float = 0.0
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    p99_ms: float = math.nan
    server_mean_ms: float = math.nan
    utilisation: float = math.nan  # of the web tier's worker slots (utilisation law)
    cpu_utilisation: float = math.nan  # of the shared cores, where the hosts share them
    expected_rps: float = math.nan  # closed model with the measured response time
    peak_server_connections: float = math.nan  # per database host
    mean_active_server_connections: float = math.nan  # every database host together
    peak_client_waiting: float = math.nan  # pgbouncer, all web hosts, 1 s samples
    pool_wait_ms: float = math.nan  # pgbouncer's own count of client wait time, all web hosts
    pool_xact_ms: float = math.nan  # pgbouncer's count of time in transactions, all web hosts
    router_status_per_request: float = math.nan  # the router's status queries, every server
    generator_cpu_peak: float = math.nan
    fleet_cpu_cores: float = math.nan  # every host and the generator, mean over the stage
    cpu_ms_per_request: float = math.nan  # CPU above the fleet at rest, per request
    service_ms: dict = field(default_factory=dict)  # endpoint -> (mean, p99) of in-app time


def stage_windows(plan: Plan, starts: list[dict], run_end: float) -> list[tuple]:
    """(stage, measured start, end) with each stage's warm-up cut off."""
    windows = []
    for i, began in enumerate(starts):
        stage = next(s for s in plan.stages if s.label == began["label"])
        end = starts[i + 1]["time"] if i + 1 < len(starts) else run_end
        windows.append((stage, min(began["time"] + plan.warmup_s, end), end))
    return windows


def _series(samples, metric, start, end):
    """{time: {host: value}} of one metric in a window."""
    by_time: dict[float, dict[str, float]] = defaultdict(dict)
    for t, host, name, value in samples:
        if metric in (None, name) and start <= t < end:
            by_time[round(t)][f"{host} {name}" if metric is None else host] = value
    return by_time


def counter_delta(samples, metric, start, end) -> float:
    """How much a cumulative counter grew in a window, summed over hosts (each host's last
    sample minus its first); nan when no host sampled it twice."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for t, host, name, value in sorted(samples):
        if name == metric and start <= t < end:
            first.setdefault(host, value)
            last[host] = value
    grown = [last[host] - first[host] for host in first]
    return sum(grown) if grown else math.nan


def fleet_cores(samples, start, end) -> float:
    """Mean CPU (cores) of every host and the load generator in a window; the machine's total
    is left out, since it also counts whatever else runs here."""
    by_time = _series([s for s in samples if s[1] == "cpu" and s[2] != "machine"], None, start, end)
    if not by_time:
        return math.nan
    return sum(sum(hosts.values()) for hosts in by_time.values()) / len(by_time)


def measure_stage(
    stage, start, end, requests, samples, plan: Plan, idle_cores: float = 0.0
) -> StageResult:
    result = StageResult(stage.label, stage.users, stage.offered_rps, start, end)
    window = [r for r in requests if start <= r.time < end]
    seconds = max(end - start, 1e-9)
    result.requests = len(window)
    result.failures = sum(not r.ok for r in window)
    result.rps = len(window) / seconds
    result.submissions_per_s = sum(r.ok and r.name in SUBMISSIONS for r in window) / seconds
    times = [r.response_ms for r in window]
    result.p50_ms, result.p95_ms, result.p99_ms = (percentile(times, q) for q in (50, 95, 99))
    in_app = [r.server_ms for r in window if r.server_ms is not None]
    if in_app:
        result.server_mean_ms = sum(in_app) / len(in_app)
        # The slots the fleet really runs (read from its hosts), else the model's.
        slots = plan.model.get("deployed_worker_slots") or (
            plan.model["web_hosts"] * plan.model["web_worker_slots"]
        )
        result.utilisation = sum(in_app) / 1000 / seconds / slots
    by_endpoint = defaultdict(list)
    for r in window:
        if r.server_ms is not None and r.name in ENDPOINT_OF:
            by_endpoint[ENDPOINT_OF[r.name]].append(r.server_ms)
    result.service_ms = {
        endpoint: (sum(v) / len(v), percentile(v, 99), len(v))
        for endpoint, v in by_endpoint.items()
    }
    thinks = sum(r.name in ("page GET", "review GET") for r in window)
    if window and times:
        think_per_request = plan.think_time_s * thinks / len(window)
        result.expected_rps = stage.users / (think_per_request + sum(times) / len(times) / 1000)
    connections = _series(samples, "pg_connections", start, end)
    if connections:
        result.peak_server_connections = max(max(hosts.values()) for hosts in connections.values())
    active = _series(samples, "pg_active", start, end)
    if active:
        result.mean_active_server_connections = sum(
            sum(hosts.values()) for hosts in active.values()
        ) / len(active)
    waiting = _series(samples, "pgb_cl_waiting", start, end)
    if waiting:
        result.peak_client_waiting = max(sum(hosts.values()) for hosts in waiting.values())
    result.pool_wait_ms = counter_delta(samples, "pgb_wait_us", start, end) / 1000
    result.pool_xact_ms = counter_delta(samples, "pgb_xact_us", start, end) / 1000
    if result.requests:
        status_queries = counter_delta(samples, "router_status_queries", start, end)
        result.router_status_per_request = status_queries / result.requests
    generator = [
        v for t, h, m, v in samples if h == "cpu" and m == "generator" and start <= t < end
    ]
    if generator:
        result.generator_cpu_peak = max(generator)
    result.fleet_cpu_cores = fleet_cores(samples, start, end)
    if plan.model.get("shared_cores"):
        result.cpu_utilisation = result.fleet_cpu_cores / plan.model["shared_cores"]
    if result.rps:
        result.cpu_ms_per_request = (result.fleet_cpu_cores - idle_cores) * 1000 / result.rps
    return result


def bottleneck(stage: StageResult) -> tuple[float, str]:
    """The busier of the two resources the model bounds capacity by: the web workers, and the
    shared cores where the hosts share them."""
    pairs = [(stage.utilisation, "of the workers"), (stage.cpu_utilisation, "of the shared cores")]
    pairs = [(u, what) for u, what in pairs if not math.isnan(u)]
    return max(pairs, default=(math.nan, ""))


def sustained(stage: StageResult, objective_ms: float) -> bool:
    """Whether a stage held the objective: requests served, none failed, p95 within it."""
    return stage.requests > 0 and stage.failures == 0 and stage.p95_ms <= objective_ms


def saturated(stage: StageResult, objective_ms: float) -> bool:
    """Whether a stage was past the knee: it broke the objective, or its users could not get
    the rate they would send at the measured response time (the closed model's plateau)."""
    return not sustained(stage, objective_ms) or stage.rps < ACHIEVED_SHARE * stage.offered_rps


def measured_knee(stages: list[StageResult], objective_ms: float):
    """(throughput, stage, crossed): the highest throughput a stage sustained within the
    objective, and whether a stage offering more was saturated. Without such a stage the
    knee lies higher still and the figure is a lower bound."""
    held = [s for s in stages if sustained(s, objective_ms)]
    if not held:
        return math.nan, None, bool(stages)
    best = max(held, key=lambda s: s.rps)
    crossed = any(s.offered_rps > best.offered_rps and saturated(s, objective_ms) for s in stages)
    return best.rps, best, crossed


def measured_capacity(stages: list[StageResult], target: float, idle_share: float = 0.0):
    """Requests/s at the target utilisation extrapolated by the utilisation law from the stage
    whose measured utilisation is nearest the target: U = idle + X x demand, so
    X_target = X x (target - idle) / (U - idle). Shown beside the direct readings, never a
    verdict: CPU per request is not constant across load on these machines."""
    usable = [s for s in stages if bottleneck(s)[0] > 0]
    if not usable:
        return math.nan, None
    nearest = min(usable, key=lambda s: abs(math.log(bottleneck(s)[0] / target)))
    busy, what = bottleneck(nearest)
    idle = idle_share if what == "of the shared cores" else 0.0
    if busy <= idle:
        return math.nan, nearest
    return nearest.rps * (target - idle) / (busy - idle), nearest


def capacity_stage(stages: list[StageResult]) -> StageResult | None:
    """The step at the predicted capacity (1x), if the plan had one."""
    return next((s for s in stages if s.label == CAPACITY_STAGE), None)


@dataclass
class Verdict:
    name: str
    predicted: str
    measured: str
    passed: bool | None  # None: not applicable to this run
    judged: bool  # whether it decides the exit status of this run
    # A prediction from service times calibrated elsewhere: shown, but neither passed nor failed.
    uncalibrated: bool = False

    @property
    def word(self) -> str:
        if self.uncalibrated:
            return "UNCALIBRATED"
        if self.passed is None:
            # A verdict this run is judged on but could not measure fails it (main's exit).
            return "NOT MEASURED" if self.judged else "n/a"
        return ("PASS" if self.passed else "FAIL") + ("" if self.judged else " (not judged)")


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def verdicts(
    plan: Plan,
    stages: list[StageResult],
    ledger: dict,
    generator_cpu: list[float],
    judged: set[str],
    idle_cores: float = 0.0,
) -> list[Verdict]:
    m = plan.model
    out = []

    def add(name, predicted, measured, passed):
        out.append(Verdict(name, predicted, measured, passed, name in judged))

    uncalibrated = m.get("uncalibrated", "")
    objective = m["latency_p95_ms"]

    def within(ratio):
        return None if math.isnan(ratio) else abs(ratio - 1) <= CAPACITY_TOLERANCE

    knee, knee_stage, crossed = measured_knee(stages, objective)
    ratio = knee / m["saturation_rps"] if not math.isnan(knee) else math.nan
    add(
        "saturation throughput",
        f"{_fmt(m['saturation_rps'])} requests/s at 100% of the {m['bottleneck']}",
        (
            f"{_fmt(knee)} requests/s ({_fmt(ratio, 2)}x; stage "
            f"{knee_stage.label if knee_stage else '-'}, the highest within p95 "
            f"{objective:.0f} ms and no errors"
            + ("" if crossed else "; no stage saturated, so the knee is higher still")
            + ")"
            if knee_stage
            else "no stage held the objective"
        ),
        # Without a saturated stage the measurement is a lower bound: it passes if it already
        # reaches the prediction's lower tolerance.
        (
            within(ratio)
            if crossed
            else None
            if math.isnan(ratio)
            else ratio >= 1 - CAPACITY_TOLERANCE
        )
        if knee_stage
        else False,
    )
    at_capacity = capacity_stage(stages)
    busy, what = bottleneck(at_capacity) if at_capacity else (math.nan, "")
    add(
        "capacity at the target utilisation",
        f"{_fmt(m['capacity_rps'])} requests/s within p95 {objective:.0f} ms at "
        f"{m['target_utilisation']:.0%} of the {m['bottleneck']}",
        (
            f"{_fmt(at_capacity.rps)} requests/s, p95 {_fmt(at_capacity.p95_ms, 0)} ms, "
            f"{at_capacity.failures} failed, {_fmt(busy * 100, 0)}% {what} (stage "
            f"{at_capacity.label})"
            if at_capacity
            else "the plan had no stage at the predicted capacity"
        ),
        # Both sides of the prediction: the rate was served in time, and it kept the bottleneck
        # near the target utilisation (a model that under-predicts capacity fails here).
        sustained(at_capacity, objective)
        and at_capacity.rps >= (1 - CAPACITY_TOLERANCE) * m["capacity_rps"]
        and abs(busy / m["target_utilisation"] - 1) <= CAPACITY_TOLERANCE
        if at_capacity and not math.isnan(busy)
        else None,
    )
    add(
        "target within the predicted capacity",
        f"{_fmt(m['offered_rps'])} requests/s offered at the target load",
        f"the predicted capacity is {_fmt(m['capacity_rps'])} requests/s"
        + (
            ""
            if m["offered_rps"] <= m["capacity_rps"]
            else f": too little for the target; the fleet needs {m['web_hosts_needed']:.0f} web "
            "hosts (the model's check stops `make provision` for this)"
        ),
        m["offered_rps"] <= m["capacity_rps"],
    )
    idle_share = idle_cores / m["shared_cores"] if m.get("shared_cores") else 0.0
    extrapolated, basis = measured_capacity(stages, m["target_utilisation"], idle_share)
    busy, what = bottleneck(basis) if basis else (math.nan, "")
    ratio = extrapolated / m["capacity_rps"] if not math.isnan(extrapolated) else math.nan
    out.append(
        Verdict(
            "capacity, extrapolated",
            f"{_fmt(m['capacity_rps'])} requests/s",
            f"{_fmt(extrapolated)} requests/s ({_fmt(ratio, 2)}x; by the utilisation law from "
            f"stage {basis.label if basis else '-'} at {_fmt(busy * 100, 0)}% {what})",
            None,
            False,
        )
    )
    if uncalibrated:
        for verdict in out:
            if verdict.name in CAPACITY_VERDICTS:
                verdict.uncalibrated = True
                verdict.measured += f"; {uncalibrated}"
    peak = max(
        (s.peak_server_connections for s in stages if not math.isnan(s.peak_server_connections)),
        default=math.nan,
    )
    add(
        "server connections",
        f"at most {m['pooled_server_connections']:.0f} per database host (pools at their cap)",
        f"peak {_fmt(peak, 0)}",
        None if math.isnan(peak) else peak <= m["pooled_server_connections"],
    )
    below = [s for s in stages if s.offered_rps <= m["capacity_rps"] * 1.0001]
    errors = sum(s.failures for s in below)
    counted = [s for s in below if not math.isnan(s.pool_wait_ms)]
    waits = sum(s.pool_wait_ms for s in counted) if counted else math.nan
    in_transactions = sum(s.pool_xact_ms for s in counted if not math.isnan(s.pool_xact_ms))
    # The pools are sized so that a transaction finds its pool full with probability
    # pool_wait_probability at most; it then waits for one of the pool's transactions to end,
    # so at most about one transaction. Waits beyond that share of the transaction time are
    # not the pool's size: connection logins or health checks on the request's path.
    allowed = m["pool_wait_probability"] * in_transactions
    add(
        "no errors below capacity",
        "0 failed requests",
        f"{errors} failed of {sum(s.requests for s in below)}",
        errors == 0 if below else None,
    )
    add(
        "pgbouncer waits below capacity",
        f"at most {m['pool_wait_probability']:g} of the time in transactions "
        f"(pool_wait_probability; {_fmt(allowed, 2)} ms here), by pgbouncer's SHOW STATS",
        f"{_fmt(waits, 2)} ms waited in {_fmt(in_transactions / 1000, 1)} s of transactions",
        None if math.isnan(waits) else waits <= allowed,
    )
    target = next((s for s in stages if s.label in ("target", "soak", "light")), None)
    add(
        "p95 at the target load",
        f"<= {objective:.0f} ms",
        f"{_fmt(target.p95_ms, 0)} ms, {_fmt(target.rps)} requests/s (stage {target.label})"
        if target
        else "-",
        target.p95_ms <= objective if target and not math.isnan(target.p95_ms) else None,
    )
    add(
        "no stale reads",
        "0 of a taker's re-reads show other answers than it saved",
        f"{ledger.get('stale_reads', 0)} stale of {ledger.get('rereads', 0)} re-reads",
        ledger.get("stale_reads", 0) == 0 if ledger.get("rereads") else None,
    )
    missing = ledger.get("missing_primary", 0) + ledger.get("missing_completed", 0)
    add(
        "ledger",
        f"{ledger.get('acknowledged', 0)} acknowledged submissions and "
        f"{ledger.get('completed', 0)} completions on the primary",
        f"{missing} missing on the primary; {ledger.get('missing_replica', 0)} on the replicas",
        ledger.get("acknowledged", 0) > 0
        and missing == 0
        and ledger.get("missing_replica", 0) == 0,
    )
    busy = [
        c for c in generator_cpu if c >= GENERATOR_CPU_LIMIT * ledger.get("generator_processes", 1)
    ]
    lagging = [s.label for s in stages if s.rps < ACHIEVED_SHARE * s.expected_rps]
    saturated = len(busy) > GENERATOR_BUSY_SHARE * max(len(generator_cpu), 1)
    lost = ledger.get("records_lost", 0)
    add(
        "valid run",
        f"generator below {GENERATOR_CPU_LIMIT:.0%} CPU; "
        f"achieved >= {ACHIEVED_SHARE:.0%} of offered; every request recorded",
        f"{len(busy)} of {len(generator_cpu)} CPU samples saturated; "
        f"stages short of their offered rate: {', '.join(lagging) or 'none'}; "
        f"{lost} requests counted by Locust but not recorded",
        not saturated and not lagging and lost == 0,
    )
    return out


def load_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default
