"""What the fleet does while load runs, sampled every second into one long table.

- db hosts: client backends in pg_stat_activity (all, and active), and on the primary the
  replicas' replay lag from pg_stat_replication;
- web hosts: pgbouncer's SHOW POOLS (clients active and waiting, server connections, maxwait),
  read as its stats user;
- cache hosts: the clients of each Redis instance (established connections, which is what
  INFO clients counts; the app's ACL users may not run INFO);
- CPU of every host (its container's cgroup), of the load generator and of the machine.

Each remote probe is one long-running `docker exec` of a shell loop; it ends by itself when the
sampler stops reading (its next write gets SIGPIPE) or after its deadline.
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from loadtests.fleet import PGBOUNCER_CONSOLE, Fleet, vault

Row = tuple[float, str, str, float]  # time, host, metric, value

ACTIVITY_SQL = (
    "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
LAG_SQL = (
    "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0) "
    "FROM pg_stat_replication"
)
REDIS_PORTS = {"redis_cache_clients": 6379, "redis_sessions_clients": 6380}


def _shell_loop(command: str, interval: float, seconds: float) -> list[str]:
    script = (
        f"end=$(( $(date +%s) + {int(seconds)} )); "
        f'while [ "$(date +%s)" -lt "$end" ]; do echo "@@ $(date +%s.%N)"; '
        f"{command}; sleep {interval}; done"
    )
    return ["sh", "-c", script]


def parse_activity(lines: list[str]) -> dict[str, float]:
    active, total = lines[0].split("|")[:2]
    values = {"pg_active": float(active), "pg_connections": float(total)}
    if len(lines) > 1:
        values["replication_lag_bytes"] = float(lines[1])
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

    def start(self) -> None:
        stats_password = vault(self.fleet.env)["vault_pgbouncer_stats_password"]
        primaries = set(self.fleet.hosts("db_primary"))
        for host in self.fleet.hosts("db"):
            sql = ACTIVITY_SQL + ";" + (LAG_SQL + ";" if host in primaries else "")
            psql = f"runuser -u postgres -- psql -XAtq -d postgres -c {shlex.quote(sql)}"
            self._remote(host, psql, parse_activity)
        for host in self.fleet.hosts("web"):
            pools = f"{PGBOUNCER_CONSOLE} 'SHOW POOLS'"
            self._remote(host, pools, parse_pools, env={"PGPASSWORD": stats_password})
        for host in self.fleet.hosts("cache"):
            counts = "; ".join(
                f"awk '$4 == \"01\" && $2 ~ /:{port:04X}$/' /proc/net/tcp /proc/net/tcp6 | wc -l"
                for port in REDIS_PORTS.values()
            )
            self._remote(host, counts, parse_redis)
        self._thread(self._cpu)

    def watch_generator(self, pid: int) -> None:
        """Count this process and its children (Locust master and workers) as the generator."""
        self.generator_pids.append(pid)

    def stop(self) -> Path:
        self.stopping.set()
        for process in self.processes:
            process.terminate()
        for thread in self.threads:
            thread.join(timeout=10)
        path = self.out / "samples.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["time", "host", "metric", "value"])
            writer.writerows(sorted(self.rows))
        return path

    def _add(self, t: float, host: str, values: dict[str, float]) -> None:
        with self.lock:
            self.rows.extend((round(t, 3), host, metric, value) for metric, value in values.items())

    def _thread(self, target: Callable, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _remote(self, host: str, command: str, parse: Callable, env=None) -> None:
        argv = self.fleet.command(
            host, *_shell_loop(command, self.interval, self.deadline), env=env
        )
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        self._thread(self._read, host, process, parse)

    def _read(self, host: str, process: subprocess.Popen, parse: Callable) -> None:
        stamp, block = None, []
        for line in process.stdout:
            line = line.rstrip("\n")
            if line.startswith("@@ "):
                if stamp is not None and block:
                    self._parse(host, stamp, block, parse)
                stamp, block = float(line[3:]), []
            elif line:
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
