"""What the fleet does while load runs, sampled every second into one long table.

- db hosts: client backends in pg_stat_activity (all, and active), on the primary the
  replicas' replay lag from pg_stat_replication, and the read router's status queries so far
  (pg_stat_statements);
- web hosts: pgbouncer's SHOW POOLS (clients active and waiting, server connections, maxwait)
  and SHOW STATS (its running totals of the time clients waited for a server connection, so a
  wait shorter than a sample interval still counts, and of transactions and their time), read
  as its stats user;
- cache hosts: the clients of each Redis instance (established connections, which is what
  INFO clients counts; the app's ACL users may not run INFO);
- CPU of every host (its container's cgroup), of the load generator and of the machine.

Each remote probe is one long-running `docker exec`: one psql session repeating its query with
\\watch (a process per sample would cost more CPU than some tiers use under load), or a shell
loop for Redis. Killing the docker client does not stop a process inside the container, so
each probe first prints its PID, and stop() kills it there; a deadline ends it otherwise.
"""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from loadtests.fleet import Fleet, vault

Row = tuple[float, str, str, float]  # time, host, metric, value

# The comment in the read router's status queries (app/routing/replicas.py: STATUS_SQL,
# PRIMARY_SQL); the load tests do not import the app, so it is named here too, and
# loadtests/tests checks that both queries carry it. This query's own text cannot match:
# pg_stat_statements stores its constants as $n.
ROUTER_STATUS_TAG = "/* tally:router-status */"
# One row per sample: active and all client backends but this one; on a primary the largest
# replay lag of its replicas (empty on a replica); and the running count of the read router's
# status queries, from pg_stat_statements, which lives in the app's database.
ACTIVITY_SQL = (
    "SELECT count(*) FILTER (WHERE state = 'active'), count(*), "
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT coalesce(max(pg_wal_lsn_diff("
    "pg_current_wal_lsn(), replay_lsn)), 0) FROM pg_stat_replication) END, "
    "(SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
    f"WHERE strpos(query, '{ROUTER_STATUS_TAG}') > 0) "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
# The app's reads of its own tables on a database server so far, by the app's role: on a replica,
# the reads the router sent there. Not its other statements: Django's connection health check
# (SELECT 1), psycopg's type lookups, the router's status queries.
APP_READS_SQL = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
    """WHERE userid = '{user}'::regrole AND query ~ '^SELECT .* FROM "?surveys_'"""
)
# Metric name -> the Redis instance's port in the topology (tally_ports).
REDIS_PORTS = {
    "redis_cache_clients": "redis_cache",
    "redis_sessions_clients": "redis_sessions",
}


def _shell_loop(command: str, interval: float, seconds: float) -> list[str]:
    script = (
        f"end=$(( $(date +%s) + {int(seconds)} )); "
        f'while [ "$(date +%s)" -lt "$end" ]; do echo "@@ $(date +%s.%N)"; '
        f"{command}; sleep {interval}; done"
    )
    return ["sh", "-c", script]


def parse_activity(lines: list[str]) -> dict[str, float]:
    active, total, lag, status_queries = lines[0].split("|")[:4]
    values = {
        "pg_active": float(active),
        "pg_connections": float(total),
        "router_status_queries": float(status_queries),
    }
    if lag:
        values["replication_lag_bytes"] = float(lag)
    return values


def parse_pools(lines: list[str]) -> dict[str, float]:
    """SHOW POOLS (psql -A, with header), summed over pools; maxwait is the largest."""
    header, *rows = (line.split("|") for line in lines)
    totals = dict.fromkeys(("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used"), 0.0)
    maxwait = 0.0
    for row in rows:
        pool = dict(zip(header, row, strict=False))
        if pool.get("database") == "pgbouncer":
            continue
        for key in totals:
            totals[key] += float(pool.get(key) or 0)
        maxwait = max(
            maxwait, float(pool.get("maxwait", 0)) + float(pool.get("maxwait_us", 0)) / 1e6
        )
    return {
        "pgb_cl_active": totals["cl_active"],
        "pgb_cl_waiting": totals["cl_waiting"],
        "pgb_sv_active": totals["sv_active"],
        "pgb_sv_total": totals["sv_active"] + totals["sv_idle"] + totals["sv_used"],
        "pgb_maxwait_s": maxwait,
    }


# SHOW STATS running totals, over every database: metric -> column.
STATS_COLUMNS = {
    "pgb_wait_us": "total_wait_time",  # time clients waited for a server connection
    "pgb_xact_us": "total_xact_time",  # time spent in transactions
}


def parse_stats(lines: list[str]) -> dict[str, float]:
    """SHOW STATS (psql -A, with header): the running totals of STATS_COLUMNS, summed over
    every database but pgbouncer's own."""
    header, *rows = (line.split("|") for line in lines)
    totals = dict.fromkeys(STATS_COLUMNS, 0.0)
    for row in rows:
        database = dict(zip(header, row, strict=False))
        if database.get("database") != "pgbouncer":
            for metric, column in STATS_COLUMNS.items():
                totals[metric] += float(database.get(column) or 0)
    return totals


def parse_redis(lines: list[str]) -> dict[str, float]:
    return {metric: float(count) for metric, count in zip(REDIS_PORTS, lines, strict=True)}


class Sampling:
    """Start every sampler for a run of `seconds`; stop() joins them and writes samples.csv."""

    def __init__(self, fleet: Fleet, out: Path, seconds: float, interval: float = 1.0):
        self.fleet, self.out, self.interval = fleet, out, interval
        self.deadline = seconds + 120
        self.rows: list[Row] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.processes: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []
        self.generator_pids: list[int] = []
        self.remote_pids: list[tuple[str, int]] = []

    def start(self) -> None:
        stats_password = vault(self.fleet.env)["vault_pgbouncer_stats_password"]
        watch = f" \\watch i={self.interval} c={int(self.deadline / self.interval)}\n"
        for host in self.fleet.hosts("db"):
            psql = ("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", self.fleet.database)
            self._remote(host, psql, parse_activity, stdin=ACTIVITY_SQL + watch, framing="line")
        for host in self.fleet.hosts("web"):
            env = {"PGPASSWORD": stats_password}
            psql = self.fleet.pgbouncer_psql()
            self._remote(host, psql, parse_pools, stdin="SHOW POOLS" + watch, env=env)
            self._remote(host, psql, parse_stats, stdin="SHOW STATS" + watch, env=env)
        for host in self.fleet.hosts("cache"):
            counts = "; ".join(
                f"awk '$4 == \"01\" && $2 ~ /:{int(port):04X}$/' "
                "/proc/net/tcp /proc/net/tcp6 | wc -l"
                for port in map(self.fleet.port, REDIS_PORTS.values())
            )
            self._remote(host, _shell_loop(counts, self.interval, self.deadline), parse_redis)
        self._thread(self._cpu)

    def watch_generator(self, pid: int) -> None:
        """Count this process and its children (Locust master and workers) as the generator."""
        self.generator_pids.append(pid)

    def stop(self) -> Path:
        self.stopping.set()
        for host, pid in list(self.remote_pids):
            subprocess.run(
                self.fleet.command(host, "kill", str(pid)), capture_output=True, check=False
            )
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for thread in self.threads:
            thread.join(timeout=10)
        path = self.out / "samples.csv"
        with self.lock:
            rows = sorted(self.rows)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["time", "host", "metric", "value"])
            writer.writerows(rows)
        return path

    def _add(self, t: float, host: str, values: dict[str, float]) -> None:
        with self.lock:
            self.rows.extend((round(t, 3), host, metric, value) for metric, value in values.items())

    def _thread(self, target: Callable, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _remote(self, host, argv, parse, *, stdin="", env=None, framing="title") -> None:
        """Start a probe on `host`. Its output is framed by lines: "line", every line a sample;
        "title", a sample after each title line of psql's \\watch (or our shell loop's "@@")."""
        announced = ("sh", "-c", 'echo "$$"; exec "$@"', "sh", *argv)  # the PID, then the probe
        process = subprocess.Popen(
            self.fleet.command(host, *announced, env=env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.fleet.environ(env),
        )
        process.stdin.write(stdin)
        process.stdin.close()
        self.processes.append(process)
        self._thread(self._read, host, process, parse, framing)

    def _read(self, host: str, process: subprocess.Popen, parse: Callable, framing) -> None:
        stamp, block = None, []
        first = process.stdout.readline().strip()
        if first.isdigit():
            with self.lock:
                self.remote_pids.append((host, int(first)))
        for line in process.stdout:
            line = line.rstrip("\n")
            if not line:
                continue
            if framing == "line":
                self._parse(host, time.time(), [line], parse)
            elif line.startswith("@@ ") or (line.endswith("s)") and "(every " in line):
                if stamp is not None and block:
                    self._parse(host, stamp, block, parse)
                stamp, block = time.time(), []
            else:
                block.append(line)
        if stamp is not None and block and not self.stopping.is_set():
            self._parse(host, stamp, block, parse)

    def _parse(self, host, stamp, block, parse) -> None:
        try:
            self._add(stamp, host, parse(block))
        except (ValueError, IndexError):
            self._add(stamp, host, {"sampler_errors": 1.0})

    def _cpu(self) -> None:
        """CPU in cores (CPU seconds per second) of each host, the generator and the machine."""
        usage = {
            host: _cgroup_usage_file(self.fleet.container(host)) for host in self.fleet.hosts("all")
        }
        previous: dict[str, float] = {}
        last = time.monotonic()
        while not self.stopping.wait(self.interval):
            now = time.monotonic()
            current = {host: _read_ns(path) / 1e9 for host, path in usage.items() if path}
            current["generator"] = self._generator_seconds()
            current["machine"] = _machine_busy_seconds()
            elapsed = now - last
            if previous:
                self._add(
                    time.time(),
                    "cpu",
                    {
                        host: max(0.0, (value - previous[host]) / elapsed)
                        for host, value in current.items()
                        if host in previous
                    },
                )
            previous, last = current, now

    def _generator_seconds(self) -> float:
        total = 0.0
        for pid in self.generator_pids:
            try:
                process = psutil.Process(pid)
                for p in [process, *process.children(recursive=True)]:
                    times = p.cpu_times()
                    total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total


def _cgroup_usage_file(container: str) -> Path | None:
    """The file with a container's total CPU time: cgroup v1 cpuacct or v2 cpu.stat."""
    result = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True
    )
    cid = result.stdout.strip()
    if not cid:
        return None
    candidates = [
        f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpuacct/system.slice/docker-{cid}.scope/cpuacct.usage",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat",
        f"/sys/fs/cgroup/docker/{cid}/cpu.stat",
    ]
    return next((Path(path) for path in candidates if os.path.exists(path)), None)


def _read_ns(path: Path) -> float:
    text = path.read_text()
    if path.name == "cpu.stat":  # v2: usage_usec
        fields = dict(line.split() for line in text.splitlines())
        return float(fields["usage_usec"]) * 1000
    return float(text)


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (everything but idle and iowait)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
