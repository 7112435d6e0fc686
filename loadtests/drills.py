"""python -m loadtests.drills ENV [NAME ...] [--light]: failure drills under load, with a ledger.

Each drill runs the survey load (the capacity model's target rate, or a light load with
--light), injects one fault, heals it, stops the load, reconciles the ledger of acknowledged
writes with the database and judges what the fault cost. The report folder
(build/ENV/drills/<time>/) gets index.md with each drill's section (verdicts, figures, a
timeline of errors and latency around the fault), summary.json and the raw CSVs of each drill.
Exits 1 when a verdict fails. `make drill NAME=...` runs one, `make drills` every one.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib
import requests
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtests import analysis, ledger, runner
from loadtests.__main__ import arguments, build_plan
from loadtests.fleet import ROOT, Fleet, report_folder, vault
from loadtests.forms import SURVEY_LINK, Form
from loadtests.releases import scratch_release
from loadtests.samplers import APP_READS_SQL

# The load runs this long before the fault (its warm-up is not judged) and after the heal.
STEADY_S = 15
AFTER_S = 20
# A light load for `make test`: enough requests to see a fault, little CPU.
LIGHT_ARGS = ["--shape", "light", "--users", "8", "--think", "1", "--warmup", "5"]
# Load runs until a drill stops it; this only bounds a drill that hangs.
MAX_LOAD_S = 1800
# How long a drill waits for the fleet to be whole (healed from the drill before) to start.
WHOLE_S = 90
# How long the primary stays away, and by when service must be back after it returns
# (pgbouncer retries a failed server login every second).
PRIMARY_AWAY_S = 5
PRIMARY_RECOVERY_S = 5
# By when page saves work again after the session store has room (the next request's save).
SESSIONS_RECOVERY_S = 2


@dataclass
class Verdict:
    name: str
    measured: str
    passed: bool


@dataclass
class Outcome:
    """What one drill measured. Times are seconds since the epoch."""

    name: str
    title: str
    requests: list[analysis.Request]
    start: float  # the load's warm-up ended: requests from here on are judged
    fault: float
    heal: float
    end: float
    ledger: dict
    notes: dict = field(default_factory=dict)  # what the fault itself reported

    @property
    def judged(self) -> list[analysis.Request]:
        return [r for r in self.requests if self.start <= r.time <= self.end]

    @property
    def failed(self) -> list[analysis.Request]:
        return [r for r in self.judged if not r.ok]

    def failed_of(self, method: str) -> list[analysis.Request]:
        return [r for r in self.failed if r.name.endswith(method)]

    @property
    def statuses(self) -> dict[str, int]:
        """Failures by status ('0' is no response at all)."""
        return dict(sorted(Counter(str(r.status) for r in self.failed).items()))

    @property
    def recovery_s(self) -> float:
        """From the heal to the last failure after it (0: none after the heal)."""
        late = [r.time for r in self.failed if r.time >= self.heal]
        return round(max(late) - self.heal, 2) if late else 0.0

    @property
    def releases(self) -> list[str]:
        """The releases that answered, in the order they first did."""
        return list(dict.fromkeys(r.release for r in self.judged if r.release))

    def figures(self) -> dict:
        return {
            "requests": len(self.judged),
            "failed": len(self.failed),
            "failed_gets": len(self.failed_of("GET")),
            "failed_posts": len(self.failed_of("POST")),
            "failures_by_status": self.statuses,
            "acknowledged": self.ledger["acknowledged"],
            "completed": self.ledger["completed"],
            "missing": self.missing,
            "rereads": self.ledger["rereads"],
            "stale_reads": self.ledger["stale_reads"],
            "fault_s": round(self.heal - self.fault, 2),
            "recovery_s": self.recovery_s,
            "releases": self.releases,
            # The faults' own bookkeeping (names starting with _) stays out of the report.
            **{key: value for key, value in self.notes.items() if not key.startswith("_")},
        }

    @property
    def missing(self) -> int:
        return (
            self.ledger["missing_primary"]
            + self.ledger["missing_completed"]
            + self.ledger["missing_replica"]
        )


# --- Common verdicts --------------------------------------------------------------------------


def nothing_lost(o: Outcome) -> Verdict:
    return Verdict(
        "0 acknowledged submissions lost",
        f"{o.missing} missing of {o.ledger['acknowledged']} pages and "
        f"{o.ledger['completed']} completions",
        o.missing == 0 and o.ledger["acknowledged"] > 0,
    )


def no_stale_reads(o: Outcome) -> Verdict:
    return Verdict(
        "0 stale reads of a client's own write",
        f"{o.ledger['stale_reads']} of {o.ledger['rereads']} re-reads",
        o.ledger["stale_reads"] == 0 and o.ledger["rereads"] > 0,
    )


def no_failures(o: Outcome) -> Verdict:
    return Verdict(
        "0 failed requests",
        f"{len(o.failed)} of {len(o.judged)} ({o.statuses or 'none'})",
        not o.failed and len(o.judged) > 0,
    )


# --- The drills -------------------------------------------------------------------------------


@dataclass
class Drill:
    name: str
    title: str
    inject: Callable[[Fleet, dict], None]
    heal: Callable[[Fleet, dict], None]
    hold_s: float  # how long the fault lasts before it is healed
    judge: Callable[[Outcome, Fleet], list[Verdict]]
    # What watches the fleet from the load's start to its end (its results go to the judge in
    # notes["_watch"]), or None.
    watch: Callable[[Fleet], Watch] | None = None
    # What sets the fleet up for the drill before its load starts, or None.
    setup: Callable[[Fleet, dict], None] | None = None


# The nice value `make failover` and `make switchover` run at. In a cloud, Ansible runs on a
# machine of its own (an operator's, or CI's); on the local fleet it shares the fleet's cores
# with the load, and its dozens of short module runs queue behind the load's processes, which
# put seconds on the window in which writes fail that no deployment has. Only the controller's
# side is raised: the module runs inside the hosts are the containers' own processes, at their
# usual priority.
CONTROLLER_NICE = -10


def _make(*args: str, nice: int = 0) -> subprocess.CompletedProcess:
    command = ["nice", "-n", str(nice), "make", *args] if nice else ["make", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def _make_deploy(fleet: Fleet, notes: dict, ref: str, *args: str) -> subprocess.CompletedProcess:
    """`make deploy` of REF, timed into notes["deploy_s"]."""
    started = time.time()
    run = _make("deploy", f"ENV={fleet.env}", f"REF={ref}", *args)
    notes["deploy_s"] = round(time.time() - started, 1)
    return run


def _built_release() -> str:
    """The release `make deploy` built last."""
    return json.loads((ROOT / "build" / "release.json").read_text())["id"]


def _deploy(fleet: Fleet, notes: dict) -> None:
    ref = notes.get("ref") or scratch_release(notes.get("migration", False))
    run = _make_deploy(fleet, notes, ref)
    if run.returncode:
        raise DrillError(f"make deploy failed:\n{(run.stdout + run.stderr)[-4000:]}")
    notes["release"] = _built_release()


# How long a host rolled to the broken release may take to pass its gate: it never will, and
# the release it goes back to must start within this too (a healthy restart takes seconds).
BAD_GATE_S = 30
FAILED_GATE = "did not pass its readiness gate"


def _links(fleet: Fleet) -> dict[str, tuple[str, str]]:
    """Each web host's (current, previous) release links."""
    home = fleet.setting("tally_app_home")
    return {
        host: tuple(
            Path(fleet.exec(host, "readlink", "-m", f"{home}/{link}").strip()).name
            for link in ("current", "previous")
        )
        for host in fleet.hosts("web")
    }


def _deploy_broken(fleet: Fleet, notes: dict) -> None:
    """`make deploy` of a release that cannot serve: it must fail, and leave every host as it
    was."""
    notes["_links_before"] = _links(fleet)
    run = _make_deploy(fleet, notes, scratch_release(broken=True), f"GATE={BAD_GATE_S}")
    notes["deploy_exit"] = run.returncode
    output = run.stdout + run.stderr
    notes["_gate_message"] = next(
        (line.strip() for line in output.splitlines() if FAILED_GATE in line), None
    )
    notes["release"] = _built_release()


def _judge_deploy_broken(o: Outcome, fleet: Fleet) -> list[Verdict]:
    before, after = o.notes["_links_before"], _links(fleet)
    first = fleet.hosts("web")[0]
    serving = _serving(fleet)
    return [
        no_failures(o),
        nothing_lost(o),
        no_stale_reads(o),
        Verdict(
            "make deploy fails, naming the host that failed its readiness gate",
            f"exit {o.notes['deploy_exit']}: {o.notes['_gate_message']}",
            o.notes["deploy_exit"] != 0
            and bool(o.notes["_gate_message"])
            and first in o.notes["_gate_message"],
        ),
        Verdict(
            "no response came from the broken release",
            f"releases that answered {o.releases}; broken {o.notes['release']}",
            o.notes["release"] not in o.releases,
        ),
        Verdict(
            "every host serves the release it had, with its rollback target unchanged",
            f"before {before}; after {after}; serving {serving}",
            after == before and serving == {h: current for h, (current, _) in before.items()},
        ),
    ]


def _rollback(fleet: Fleet, notes: dict) -> None:
    previous = fleet.setting("tally_app_home") + "/previous"
    targets = {fleet.exec(h, "readlink", previous).strip() for h in fleet.hosts("web")}
    notes["release"] = Path(targets.pop()).name if len(targets) == 1 else f"? {targets}"
    started = time.time()
    run = _make("rollback", f"ENV={fleet.env}")
    notes["rollback_s"] = round(time.time() - started, 1)
    if run.returncode:
        raise DrillError(f"make rollback failed:\n{(run.stdout + run.stderr)[-4000:]}")


def _local_get(fleet: Fleet, host: str, path: str) -> str | None:
    """The body of a GET of gunicorn on a web host, from the host itself; None if it failed."""
    url = f"http://127.0.0.1:{fleet.port('gunicorn')}{path}"
    probe = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=2).read().decode())"
    result = fleet.run(host, "python3", "-c", probe)
    return None if result.returncode else result.stdout


def _serving(fleet: Fleet) -> dict[str, str]:
    """The release each web host answers with on its own port (`ok <release>` of /healthz)."""
    return {
        host: (_local_get(fleet, host, "/healthz") or "? none").split()[-1]
        for host in fleet.hosts("web")
    }


def _judge_roll(o: Outcome, fleet: Fleet) -> list[Verdict]:
    serving = _serving(fleet)
    wanted = o.notes["release"]
    last = [r.release for r in o.judged if r.release][-20:]
    return [
        no_failures(o),
        nothing_lost(o),
        no_stale_reads(o),
        Verdict(
            "the roll happened under the load: two releases answered",
            f"{o.releases}",
            len(o.releases) >= 2 and o.releases[-1] == wanted,
        ),
        Verdict(
            "every web host serves the release, and so do the last responses",
            f"hosts {serving}; last responses {sorted(set(last))}; wanted {wanted}",
            set(serving.values()) == {wanted} and set(last) == {wanted},
        ),
    ]


def _nothing(fleet: Fleet, notes: dict) -> None:
    return None


# --- Faults on a web host and on the primary ----------------------------------------------------

NGINX_ERROR_LOG = "/var/log/nginx/error.log"
# nginx's words for a request it could not complete on an upstream host, and for marking hosts.
UPSTREAM_FAILED = ("while connecting to upstream", "while reading response header from upstream")
HOST_DISABLED = "upstream server temporarily disabled"
NO_LIVE_UPSTREAMS = "no live upstreams"


def _victim(fleet: Fleet) -> str:
    return fleet.hosts("web")[0]


def _mark_nginx_log(fleet: Fleet, notes: dict) -> None:
    notes["_log_offsets"] = {
        lb: int(fleet.exec(lb, "stat", "-c", "%s", NGINX_ERROR_LOG)) for lb in fleet.hosts("lb")
    }


def _nginx_log_since(fleet: Fleet, notes: dict) -> list[str]:
    lines = []
    for lb, offset in notes["_log_offsets"].items():
        text = fleet.exec(lb, "tail", "-c", f"+{offset + 1}", NGINX_ERROR_LOG)
        lines += text.splitlines()
    return lines


def _kill_gunicorn(fleet: Fleet, notes: dict) -> None:
    host = _victim(fleet)
    notes["host"] = host
    notes["workers"] = fleet.gunicorn_workers(host)
    _mark_nginx_log(fleet, notes)
    fleet.exec(host, "systemctl", "kill", "--signal=SIGKILL", "tally.service")


def _stop_host(fleet: Fleet, notes: dict) -> None:
    host = _victim(fleet)
    notes["host"] = host
    notes["workers"] = fleet.gunicorn_workers(host)
    _mark_nginx_log(fleet, notes)
    subprocess.run(["docker", "kill", fleet.container(host)], check=True, capture_output=True)


def _start_host(fleet: Fleet, notes: dict) -> None:
    host = notes["host"]
    started = time.time()
    subprocess.run(["docker", "start", fleet.container(host)], check=True, capture_output=True)
    _wait_ready(fleet, host)
    notes["ready_s"] = round(time.time() - started, 1)  # from its start to its readiness


def _wait_ready(fleet: Fleet, host: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while _local_get(fleet, host, "/readyz") is None:
        if time.time() > deadline:
            raise DrillError(f"{host} was not ready {timeout:g} s after it came back")
        time.sleep(0.5)


def _judge_web_host(o: Outcome, fleet: Fleet) -> list[Verdict]:
    log = _nginx_log_since(fleet, o.notes)
    address = fleet.address(o.notes["host"])
    # One [error] line per failed try (its [warn] twin says the host was disabled).
    tries = [
        line
        for line in log
        if address in line and HOST_DISABLED not in line and any(w in line for w in UPSTREAM_FAILED)
    ]
    o.notes["nginx_failed_tries"] = len(tries)
    # With max_fails=1 nginx tries a dead host once per fail_timeout at most.
    fail_timeout = float(str(fleet.setting("nginx_upstream_fail_timeout")).removesuffix("s"))
    away = o.heal - o.fault + o.notes.get("ready_s", 0) + o.recovery_s
    allowed = math.ceil(away / fail_timeout) + 1
    posts = o.failed_of("POST")
    return [
        Verdict(
            "0 failed GETs: nginx retries them on another host",
            f"{len(o.failed_of('GET'))} of {sum(r.name.endswith('GET') for r in o.judged)}",
            not o.failed_of("GET"),
        ),
        Verdict(
            "failed POSTs no more than the requests in flight on the host",
            f"{len(posts)} failed; the host ran {o.notes['workers']} workers "
            f"({Counter(str(r.status) for r in posts)})",
            len(posts) <= o.notes["workers"],
        ),
        nothing_lost(o),
        no_stale_reads(o),
        Verdict(
            "nginx stops sending to the dead host after its first failure",
            f"{len(tries)} failed tries of {o.notes['host']} logged; at most {allowed} "
            f"(one per {fail_timeout:g} s)",
            len(tries) <= allowed,
        ),
    ]


def _only_503(o: Outcome, required: bool = False) -> Verdict:
    """Every failure a 503 with Retry-After (and, if `required`, at least one)."""
    other = {status: n for status, n in o.statuses.items() if status != "503"}
    bare = sum(1 for r in o.failed if r.status == 503 and not r.retry_after)
    return Verdict(
        "no failure but 503 with Retry-After",
        f"failures by status {o.statuses or 'none'}; {bare} 503s without Retry-After",
        not other and not bare and (o.statuses.get("503", 0) > 0 or not required),
    )


def _recovers(o: Outcome, within_s: float) -> Verdict:
    return Verdict(
        f"service returns within {within_s:g} s of the heal",
        f"last failure {o.recovery_s} s after the heal",
        o.recovery_s <= within_s,
    )


def _systemctl(group: str, action: str, unit: str):
    """A fault (or heal) that runs `systemctl ACTION UNIT` on the first host of a group."""

    def act(fleet: Fleet, notes: dict) -> None:
        host = fleet.hosts(group)[0]
        notes.setdefault("host", host)
        fleet.exec(host, "systemctl", action, unit)

    return act


def _judge_clean(o: Outcome, fleet: Fleet) -> list[Verdict]:
    return [no_failures(o), nothing_lost(o), no_stale_reads(o)]


def _judge_bounded(o: Outcome, fleet: Fleet) -> list[Verdict]:
    return [_only_503(o), _recovers(o, PRIMARY_RECOVERY_S), nothing_lost(o), no_stale_reads(o)]


def _postmaster_started(fleet: Fleet) -> dict[str, float]:
    """When each database server's postmaster started (epoch seconds)."""
    query = "SELECT extract(epoch FROM pg_postmaster_start_time())"
    return {host: float(fleet.sql(host, query)[0][0]) for host in fleet.hosts("db")}


def _restart_db(fleet: Fleet, notes: dict) -> None:
    notes["_started_before"] = _postmaster_started(fleet)
    started = time.time()
    run = _make("restart-db", f"ENV={fleet.env}")
    notes["restart_db_s"] = round(time.time() - started, 1)
    if run.returncode:
        raise DrillError(f"make restart-db failed:\n{(run.stdout + run.stderr)[-4000:]}")


def _judge_db_restart(o: Outcome, fleet: Fleet) -> list[Verdict]:
    before = o.notes["_started_before"]
    after = _postmaster_started(fleet)
    restarted = sorted(host for host in after if after[host] > before[host])
    # Queries wait in the paused pools while the primary restarts: the cost is latency.
    o.notes["slowest_ms"] = round(max((r.response_ms for r in o.judged), default=0.0))
    return [
        Verdict(
            "every database server did restart, the primary too",
            f"restarted {restarted} of {sorted(after)}",
            restarted == sorted(after),
        ),
        no_failures(o),
        nothing_lost(o),
        no_stale_reads(o),
    ]


class ReadProbe(threading.Thread):
    """GETs that read the database, through nginx, from the fault until stopped.

    A resume link opened without a session makes the app look its response up in the
    database: on a replica while one is usable, else on the primary, whose absence gives 503.
    GETs are what nginx would pass to another host on a status named in proxy_next_upstream,
    counting it as the host's failure; the takers' POSTs never are. (With usable replicas these
    reads do not reach the primary: measured, 57 of 57 answered 200 during a 5 s blip.)
    """

    def __init__(self, fleet: Fleet):
        super().__init__(daemon=True)
        self.statuses: Counter = Counter()
        self.session = requests.Session()
        # Only the fleet's CA: no REQUESTS_CA_BUNDLE from this machine's environment.
        self.session.trust_env = False
        self.session.verify = str(fleet.ca)
        self.url = self._resume_link(fleet.url)
        self.stopping = threading.Event()

    def _resume_link(self, site: str) -> str:
        slug = SURVEY_LINK.search(self.session.get(f"{site}/", timeout=10).text).group(1)
        landing = f"{site}/s/{slug}/"
        form = Form(self.session.get(landing, timeout=10).text)
        headers = {"Referer": landing, "Origin": site}
        started = self.session.post(
            landing, data=form.hidden, headers=headers, allow_redirects=False, timeout=10
        )
        if started.status_code != 302:
            raise DrillError(
                f"could not start a response for the read probe: {started.status_code}"
            )
        return site + started.headers["Location"]

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                # Without the cookies of the start: the app must look the response up.
                self.session.cookies.clear()
                status = self.session.get(self.url, timeout=10).status_code
            except requests.RequestException:
                status = 0
            self.statuses[str(status)] += 1

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        self.join()
        return dict(sorted(self.statuses.items()))


def _postgresql(fleet: Fleet, action: str, host: str | None = None) -> None:
    """systemctl ACTION of PostgreSQL on a host (the primary unless named)."""
    unit = f"postgresql@{fleet.setting('postgresql_version')}-{fleet.setting('postgresql_cluster')}"
    fleet.exec(host or fleet.hosts("db_primary")[0], "systemctl", action, unit)


def _stop_primary(fleet: Fleet, notes: dict) -> None:
    _mark_nginx_log(fleet, notes)
    notes["_probe"] = ReadProbe(fleet)
    notes["_probe"].start()
    _postgresql(fleet, "stop")


def _start_primary(fleet: Fleet, notes: dict) -> None:
    _postgresql(fleet, "start")
    time.sleep(PRIMARY_RECOVERY_S)
    notes["probe_gets"] = notes.pop("_probe").stop()


def _judge_primary_blip(o: Outcome, fleet: Fleet) -> list[Verdict]:
    log = _nginx_log_since(fleet, o.notes)
    disabled = [line for line in log if HOST_DISABLED in line or NO_LIVE_UPSTREAMS in line]
    o.notes["nginx_hosts_disabled"] = len(disabled)
    probe = o.notes["probe_gets"]
    return [
        _only_503(o, required=True),
        Verdict(
            "GETs that read the database during the fault: 200 or 503, never 502",
            f"probe GETs by status {probe}",
            sum(probe.values()) > 0 and set(probe) <= {"200", "503"},
        ),
        Verdict(
            "every web host stays in nginx's rotation",
            f"{len(disabled)} host(s) disabled or 'no live upstreams' in nginx's log",
            not disabled,
        ),
        _recovers(o, PRIMARY_RECOVERY_S),
        nothing_lost(o),
        no_stale_reads(o),
    ]


# --- Faults on the replicas ---------------------------------------------------------------------

# A replica's fault lasts longer than the router's lag limit (10 s unless TALLY_REPLICA_MAX_LAG_
# SECONDS says otherwise), so a replica that still answers must be judged behind and skipped.
REPLICA_FAULT_S = 30
# How long a healed replica may take to be counted usable again by every web host.
REPLICA_RETURN_S = 90
WATCH_INTERVAL_S = 1.0


class Watch(threading.Thread):
    """Every second: the app's reads on each database server, and which replicas every web
    host's read router counts usable (its /readyz, from the host itself)."""

    def __init__(self, fleet: Fleet):
        super().__init__(daemon=True)
        self.fleet = fleet
        self.sql = APP_READS_SQL.format(user=fleet.user("database"))
        self.reads: dict[str, list[tuple[float, int]]] = {h: [] for h in fleet.hosts("db")}
        # (time, {alias: usable on every web host}) per round
        self.usable: list[tuple[float, dict[str, bool]]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(WATCH_INTERVAL_S):
            for host, samples in self.reads.items():
                result = self.fleet.run(host, *PSQL, "-d", self.fleet.database, stdin=self.sql)
                if not result.returncode and result.stdout.strip().isdigit():
                    samples.append((time.time(), int(result.stdout)))
            views = [_readyz(self.fleet, web) for web in self.fleet.hosts("web")]
            if all(views):
                aliases = set().union(*(view["replicas"] for view in views))
                self.usable.append(
                    (time.time(), {a: all(v["replicas"][a]["ok"] for v in views) for a in aliases})
                )

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def reads_between(self, host: str, since: float, until: float) -> int:
        """Reads the host served between two times, from the samples taken in between (a
        counter that went down, after a restart that lost it, counts from zero)."""
        inside = [value for t, value in self.reads[host] if since <= t <= until]
        return sum(b - a if b >= a else b for a, b in itertools.pairwise(inside))

    def first_usable(self, alias: str, usable: bool, since: float) -> float | None:
        """When every web host first counted the replica usable (or unusable) after `since`."""
        return next(
            (t for t, view in self.usable if t >= since and view.get(alias) == usable), None
        )


PSQL = ("runuser", "-u", "postgres", "--", "psql", "-XAtq")


def _readyz(fleet: Fleet, host: str) -> dict | None:
    body = _local_get(fleet, host, "/readyz")
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _each_replica(act: Callable[[Fleet, str], None]):
    """A fault (or heal) applied to every replica, so reads have only the primary left."""

    def apply(fleet: Fleet, notes: dict) -> None:
        notes["replicas"] = fleet.hosts("db_replica")
        if not notes["replicas"]:
            raise DrillError("this environment has no replicas")
        for host in notes["replicas"]:
            act(fleet, host)

    return apply


def _replica_postgresql(action: str):
    return _each_replica(lambda fleet, host: _postgresql(fleet, action, host))


def _replay(function: str):
    return _each_replica(lambda fleet, host: fleet.psql(host, f"SELECT {function}()"))


CUT_TABLE = "tally_drill"


def _cut(fleet: Fleet, host: str, peers: list[str], port: int) -> None:
    """Drop every packet between `host` and the peers' `port`, both ways: a network partition
    (no reset, no ICMP), in a table of its own that the heal deletes whole."""
    addresses = ", ".join(fleet.address(peer) for peer in peers)
    rules = (
        f"table inet {CUT_TABLE} {{\n"
        "  chain output { type filter hook output priority filter; policy accept;\n"
        f"    ip daddr {{ {addresses} }} tcp dport {port} drop\n  }}\n"
        "  chain input { type filter hook input priority filter; policy accept;\n"
        f"    ip saddr {{ {addresses} }} tcp sport {port} drop\n  }}\n"
        "}\n"
    )
    fleet.exec(host, "nft", "-f", "-", stdin=rules)


def _uncut(fleet: Fleet, host: str) -> None:
    fleet.exec(host, "nft", "delete", "table", "inet", CUT_TABLE)


def _cut_from_primary(fleet: Fleet, host: str) -> None:
    _cut(fleet, host, fleet.hosts("db_primary"), fleet.port("postgresql"))


def _judge_replicas(o: Outcome, fleet: Fleet) -> list[Verdict]:
    watch: Watch = o.notes["_watch"]
    alias = {r["host"]: r["alias"] for r in fleet.replicas()}
    primary = fleet.hosts("db_primary")[0]
    before = {h: watch.reads_between(h, o.start, o.fault) for h in o.notes["replicas"]}
    # From when every web host counted every faulted replica unusable until the heal.
    skipped = [watch.first_usable(alias[h], False, o.fault) for h in o.notes["replicas"]]
    skipped_at = max(skipped) if None not in skipped else None
    during = (
        {h: watch.reads_between(h, skipped_at, o.heal) for h in o.notes["replicas"]}
        if skipped_at
        else {}
    )
    on_primary = watch.reads_between(primary, skipped_at or o.heal, o.heal)
    back = {h: watch.first_usable(alias[h], True, o.heal) for h in o.notes["replicas"]}
    after = {h: watch.reads_between(h, back[h] or o.end, o.end) for h in o.notes["replicas"]}
    o.notes["skipped_after_s"] = round(skipped_at - o.fault, 1) if skipped_at else None
    o.notes["usable_again_after_heal_s"] = {
        h: round(t - o.heal, 1) if t else None for h, t in back.items()
    }
    o.notes["replica_reads"] = {"before": before, "skipped": during, "after": after}
    o.notes["primary_reads_while_skipped"] = on_primary
    return [
        no_failures(o),
        no_stale_reads(o),
        nothing_lost(o),
        Verdict(
            "reads fall back to the primary: skipped replicas serve none",
            f"replicas' reads before the fault {before}; every web host skipped them "
            f"{o.notes['skipped_after_s']} s after it; reads from then to the heal: "
            f"replicas {during}, primary {on_primary}",
            all(before.values()) and bool(during) and not any(during.values()) and on_primary > 0,
        ),
        Verdict(
            "each replica is used again after it heals",
            f"usable again after {o.notes['usable_again_after_heal_s']} s; reads since: {after}",
            all(back.values()) and all(after.values()),
        ),
    ]


def _until_replicas_usable(heal):
    """A heal that then waits until every web host counts every replica usable again, so the
    judged load after it shows whether reads return to them. A healed cut can take a while: the
    WAL receiver connects without a timeout of its own, so its next try waits out TCP's SYN
    backoff (1 s four times, then doubling)."""

    def apply(fleet: Fleet, notes: dict) -> None:
        heal(fleet, notes)
        aliases = [r["alias"] for r in fleet.replicas()]
        deadline = time.time() + REPLICA_RETURN_S
        while time.time() < deadline:
            views = [_readyz(fleet, web) for web in fleet.hosts("web")]
            if all(v and all(v["replicas"][a]["ok"] for a in aliases) for v in views):
                return
            time.sleep(WATCH_INTERVAL_S)
        raise DrillError(f"the replicas were not usable {REPLICA_RETURN_S} s after the heal")

    return apply


def _replica_drill(name: str, title: str, inject, heal) -> Drill:
    return Drill(
        name, title, inject, _until_replicas_usable(heal), REPLICA_FAULT_S, _judge_replicas, Watch
    )


# --- The session store full ---------------------------------------------------------------------

SESSIONS_FULL_S = 10
# The vault is decrypted once (about a second each time), so the heal is not slowed by it.
_vault = functools.cache(vault)


def _redis_admin(fleet: Fleet, port_name: str, *argv: str) -> str:
    """A Redis command as the operator (tally_users.redis_admin), from the cache host; the
    password goes in REDISCLI_AUTH, never on a command line."""
    password = _vault(fleet.env)["vault_redis_admin_password"]
    cli = ("redis-cli", "-p", str(fleet.port(port_name)), "--user", fleet.user("redis_admin"))
    return fleet.exec(fleet.hosts("cache")[0], *cli, *argv, env={"REDISCLI_AUTH": password})


def _fill_sessions(fleet: Fleet, notes: dict) -> None:
    """Make the session store full: maxmemory below what it holds. With noeviction it then
    refuses every write, and evicts nothing (filling it with data instead cannot be made to
    stick: a connection's buffers count as used memory, so the filler's own leave room behind
    when it closes). The heal restores the maxmemory it had."""
    notes["_maxmemory"] = _redis_admin(
        fleet, "redis_sessions", "CONFIG", "GET", "maxmemory"
    ).split()[1]
    info = _redis_admin(fleet, "redis_sessions", "INFO", "memory")
    used = int(
        next(line for line in info.splitlines() if line.startswith("used_memory:")).split(":")[1]
    )
    notes["used_memory_mb"] = round(used / 1048576, 1)
    _redis_admin(fleet, "redis_sessions", "CONFIG", "SET", "maxmemory", str(used // 2))
    probe = _redis_admin(fleet, "redis_sessions", "SET", "tally-drill:probe", "1", "EX", "60")
    notes["store_refused_writes"] = probe.strip().startswith("OOM")


def _empty_sessions(fleet: Fleet, notes: dict) -> None:
    _redis_admin(fleet, "redis_sessions", "CONFIG", "SET", "maxmemory", notes["_maxmemory"])


def _judge_sessions_full(o: Outcome, fleet: Fleet) -> list[Verdict]:
    return [
        Verdict(
            "the session store was full: it refused a write (OOM)",
            f"{o.notes['store_refused_writes']}, holding {o.notes['used_memory_mb']} MB",
            o.notes["store_refused_writes"],
        ),
        _only_503(o, required=True),
        _recovers(o, SESSIONS_RECOVERY_S),
        nothing_lost(o),
        no_stale_reads(o),
    ]


# --- A web host cut off from the database ------------------------------------------------------

WEB_CUT_S = 30
# How long the load balancer's upstream check may take to put the host back after the heal.
WEB_BACK_S = 30


class ShunWatch(threading.Thread):
    """Polls the load balancers' `shunned` set (roles/nginx, tally-upstream-check) for one
    address: when it first appears, and when it is gone again after `heal_at` is set."""

    def __init__(self, fleet: Fleet, address: str):
        super().__init__(daemon=True)
        self.fleet, self.address = fleet, address
        self.out_at: float | None = None
        self.back_at: float | None = None
        self.heal_at: float | None = None
        self.stopping = threading.Event()

    def shunned(self) -> bool:
        return any(
            self.address in _firewall_set(self.fleet, lb, "shunned")
            for lb in self.fleet.hosts("lb")
        )

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                out = self.shunned()
            except DrillError:  # a round it could not read tells nothing
                continue
            now = time.time()
            if out and self.out_at is None:
                self.out_at = now
            if not out and self.out_at and self.heal_at and self.back_at is None:
                self.back_at = now

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def _cut_web_from_db(fleet: Fleet, notes: dict) -> None:
    host = _victim(fleet)
    notes["host"] = host
    notes["_shun"] = ShunWatch(fleet, fleet.address(host))
    notes["_shun"].start()
    _cut(fleet, host, fleet.hosts("db"), fleet.port("postgresql"))


def _reconnect_web_to_db(fleet: Fleet, notes: dict) -> None:
    shun: ShunWatch = notes["_shun"]
    shun.heal_at = time.time()
    _uncut(fleet, notes["host"])
    deadline = time.time() + WEB_BACK_S
    while shun.back_at is None and time.time() < deadline:
        time.sleep(0.5)
    shun.stop()


def _judge_web_db_cut(o: Outcome, fleet: Fleet) -> list[Verdict]:
    shun: ShunWatch = o.notes["_shun"]
    gunicorn_s = float(fleet.setting("app_timeout"))
    slowest = max((r.response_ms for r in o.failed), default=0.0)
    o.notes["out_of_rotation_after_s"] = round(shun.out_at - o.fault, 1) if shun.out_at else None
    o.notes["back_after_heal_s"] = round(shun.back_at - o.heal, 1) if shun.back_at else None
    o.notes["slowest_failure_ms"] = round(slowest)
    after = [r for r in o.failed if shun.out_at and r.started >= shun.out_at]
    return [
        _only_503(o),
        Verdict(
            "requests on the cut host fail fast: within the database timeouts, not gunicorn's",
            f"slowest failure {slowest:.0f} ms; gunicorn's timeout {gunicorn_s:g} s",
            slowest < gunicorn_s * 1000,
        ),
        Verdict(
            "nginx routes around it: the host is taken out, and no request sent after fails",
            f"out of rotation {o.notes['out_of_rotation_after_s']} s after the cut; "
            f"{len(after)} failed requests sent after that",
            shun.out_at is not None and not after,
        ),
        Verdict(
            "the host is put back after the heal",
            f"back {o.notes['back_after_heal_s']} s after the heal",
            shun.back_at is not None,
        ),
        nothing_lost(o),
        no_stale_reads(o),
    ]


# --- Scale out, then back in ------------------------------------------------------------------

# How long the larger fleet serves before it scales back in.
SCALE_HOLD_S = 30
SCALE_GROUPS = ("web", "db_replica")  # one host is added to each
INVENTORY_HEADER = (
    "# Written by the scale drill (loadtests/drills.py); it puts the original back.\n"
)


def _group(node: dict, name: str) -> dict | None:
    """An inventory group's body, searched through the children."""
    for child, body in (node.get("children") or {}).items():
        if body is None:  # `group:` with nothing under it
            body = node["children"][child] = {}
        if child == name:
            return body
        found = _group(body, name)
        if found is not None:
            return found
    return None


def _scaled(text: str, added: dict[str, dict], retired: bool) -> str:
    """The inventory with the added hosts in their groups, or (retired) in `retired` only:
    what an operator writes to scale out, then to scale back in."""
    inventory = yaml.safe_load(text)
    root = inventory["all"]
    for group, hosts in added.items():
        target = _group(root, "retired" if retired else group)
        if target is None:
            target = root.setdefault("children", {}).setdefault("retired", {})
        target.setdefault("hosts", {})
        for host, entry in hosts.items():
            target["hosts"][host] = entry
    return INVENTORY_HEADER + yaml.safe_dump(inventory, sort_keys=False)


def _entries(node: dict) -> dict[str, dict]:
    """Every host's inventory entry, children's included."""
    found = {host: entry or {} for host, entry in (node.get("hosts") or {}).items()}
    for body in (node.get("children") or {}).values():
        found |= _entries(body or {})
    return found


def _new_hosts(fleet: Fleet, text: str) -> dict[str, dict]:
    """One new host per scaled group, named and numbered after the group's last host (the db
    group's, for a group with none), on the next free fleet_host."""
    entries = _entries(yaml.safe_load(text)["all"])
    taken = {entry.get("fleet_host") for entry in entries.values()}
    added = {}
    for group in SCALE_GROUPS:
        hosts = fleet.groups.get(group) or fleet.groups["db"]
        last = max(hosts, key=lambda h: entries[h].get("fleet_host", 0))
        stem = last.rstrip("0123456789")
        number = max(int(h[len(stem) :] or 0) for h in entries if h.startswith(stem))
        fleet_host = entries[last]["fleet_host"] + 1
        while fleet_host in taken:
            fleet_host += 1
        taken.add(fleet_host)
        added[group] = {f"{stem}{number + 1}": {**entries[last], "fleet_host": fleet_host}}
    return added


def _inventory(fleet: Fleet) -> Path:
    return ROOT / "deploy" / fleet.env / "inventory.yml"


def _provision(fleet: Fleet, notes: dict, key: str) -> None:
    started = time.time()
    run = _make("provision", f"ENV={fleet.env}")
    notes[key] = round(time.time() - started, 1)
    log = notes["_out"] / f"provision-{key.removesuffix('_s')}.log"
    log.write_text(run.stdout + run.stderr)
    if run.returncode:
        raise DrillError(f"make provision failed (the whole log: {log}):\n{run.stdout[-3000:]}")


def _max_connections(fleet: Fleet) -> int:
    return int(fleet.sql(fleet.hosts("db_primary")[0], "SHOW max_connections")[0][0])


def _scale_out(fleet: Fleet, notes: dict) -> None:
    path = _inventory(fleet)
    original = notes["_original"] = path.read_text()
    notes["_added"] = added = _new_hosts(fleet, original)
    notes["added"] = sorted(host for hosts in added.values() for host in hosts)
    notes["max_connections_before"] = _max_connections(fleet)
    path.write_text(_scaled(original, added, retired=False))
    try:
        _provision(fleet, notes, "scale_out_s")
    except DrillError:
        path.write_text(original)
        raise
    notes["max_connections_scaled"] = _max_connections(fleet)
    generated = yaml.safe_load(
        (ROOT / "deploy" / fleet.env / "group_vars" / "all" / "capacity.generated.yml").read_text()
    )
    notes["max_connections_modelled"] = int(generated["postgresql_max_connections"])


def _served_by_new_hosts(fleet: Fleet, notes: dict) -> None:
    """Requests the new web host answered (the load balancers' access logs name the upstream)
    and reads the new replica served (its pg_stat_statements; it is new, so all are since)."""
    (web,) = notes["_added"]["web"]
    (replica,) = notes["_added"]["db_replica"]
    upstream = f"upstream={fleet.address(web)}:{fleet.port('gunicorn')}"
    counts = [
        fleet.run(lb, "grep", "-c", upstream, "/var/log/nginx/access.log").stdout.strip()
        for lb in fleet.hosts("lb")
    ]
    notes["new_web_requests"] = sum(int(c) for c in counts if c.isdigit())
    sql = APP_READS_SQL.format(user=fleet.user("database"))
    result = fleet.run(replica, *PSQL, "-d", fleet.database, stdin=sql).stdout.strip()
    notes["new_replica_reads"] = int(result) if result.isdigit() else 0


def _scale_in(fleet: Fleet, notes: dict) -> None:
    path = _inventory(fleet)
    _served_by_new_hosts(fleet, notes)
    path.write_text(_scaled(notes["_original"], notes["_added"], retired=True))
    try:
        _provision(fleet, notes, "scale_in_s")
    finally:
        path.write_text(notes["_original"])
    notes["max_connections_after"] = _max_connections(fleet)
    slots = fleet.sql(fleet.hosts("db_primary")[0], "SELECT slot_name FROM pg_replication_slots")
    notes["slots_after"] = sorted(row[0] for row in slots)
    notes["hosts_left"] = [
        host
        for host in notes["added"]
        if not subprocess.run(
            ["docker", "inspect", fleet.container(host)], capture_output=True, check=False
        ).returncode
    ]


def _judge_scale(o: Outcome, fleet: Fleet) -> list[Verdict]:
    n = o.notes
    expected_slots = sorted(r["name"] for r in fleet.replicas())
    return [
        no_failures(o),
        nothing_lost(o),
        no_stale_reads(o),
        Verdict(
            "the new hosts joined: the web host answered requests, the replica served reads",
            f"{n.get('new_web_requests')} requests on the new web host, "
            f"{n.get('new_replica_reads')} reads on the new replica",
            bool(n.get("new_web_requests")) and bool(n.get("new_replica_reads")),
        ),
        Verdict(
            "the provision applied the model's max_connections for the new host counts",
            f"before {n.get('max_connections_before')}, scaled out "
            f"{n.get('max_connections_scaled')} (the model: {n.get('max_connections_modelled')}), "
            "scaled in "
            f"{n.get('max_connections_after')}",
            n.get("max_connections_scaled") == n.get("max_connections_modelled")
            and n.get("max_connections_after") == n.get("max_connections_before"),
        ),
        Verdict(
            "scaled back in: the hosts removed, the retired replica's slot dropped",
            f"hosts left {n.get('hosts_left')}; slots {n.get('slots_after')}",
            n.get("hosts_left") == [] and n.get("slots_after") == expected_slots,
        ),
    ]


# --- A new primary ------------------------------------------------------------------------------


def _switchover_to(fleet: Fleet, notes: dict, key: str, new: str) -> None:
    """`make switchover NEW=new`, timed into notes[key_s], its log beside the report; the
    fleet's groups are read again, since the inventory now names another primary."""
    _new_primary(fleet, notes, key, "switchover", new)


def _new_primary(fleet: Fleet, notes: dict, key: str, target: str, new: str) -> None:
    """`make TARGET NEW=new` (switchover or failover, with the drill's SYNC if it set one, and
    without its provision if notes["_provision"] is False), timed into notes[key_s], its log
    beside the report; the fleet's groups are read again, since the inventory now names
    another primary."""
    started = notes[f"{key}_at"] = time.time()
    extra = [f"SYNC={notes['_sync']}"] if "_sync" in notes else []
    extra += ["PROVISION=0"] if notes.get("_provision") is False else []
    run = _make(target, f"ENV={fleet.env}", f"NEW={new}", *extra, nice=CONTROLLER_NICE)
    notes[f"{key}_s"] = round(time.time() - started, 1)
    log = notes["_out"] / f"{key}.log"
    log.write_text(run.stdout + run.stderr)
    fleet.reload_inventory()
    if run.returncode:
        raise DrillError(f"make {target} failed (the whole log: {log}):\n{run.stdout[-3000:]}")


def _switch_to_a_replica(fleet: Fleet, notes: dict) -> None:
    notes["old_primary"] = fleet.hosts("db_primary")[0]
    notes["new_primary"] = fleet.replicas()[0]["host"]
    _switchover_to(fleet, notes, "switchover", notes["new_primary"])
    notes["primary_after_switchover"] = fleet.hosts("db_primary")[0]


def _switch_back(fleet: Fleet, notes: dict) -> None:
    _switchover_to(fleet, notes, "switchback", notes["old_primary"])


def _streaming(fleet: Fleet) -> dict[str, str]:
    """Each replica's WAL receiver status and the host it streams from."""
    found = {}
    for replica in fleet.hosts("db_replica"):
        rows = fleet.sql(replica, "SELECT status, sender_host FROM pg_stat_wal_receiver")
        found[replica] = " from ".join(rows[0]) if rows else "not streaming"
    return found


def _judge_switchover(o: Outcome, fleet: Fleet) -> list[Verdict]:
    streaming = _streaming(fleet)
    primary = fleet.address(fleet.hosts("db_primary")[0])
    return [
        Verdict(
            "the replica became the primary, then the old primary again",
            f"{o.notes['new_primary']} after the switchover, "
            f"{fleet.hosts('db_primary')[0]} after the switch back",
            o.notes.get("primary_after_switchover") == o.notes["new_primary"]
            and fleet.hosts("db_primary") == [o.notes["old_primary"]],
        ),
        Verdict(
            "every replica streams from the primary afterwards",
            json.dumps(streaming, sort_keys=True),
            all(state == f"streaming from {primary}" for state in streaming.values()),
        ),
        no_failures(o),
        nothing_lost(o),
        no_stale_reads(o),
    ]


# How soon writes must work again after the primary crashed: the issue's bound for the local
# fleet, the operator's reaction (here: at once) not included.
FAILOVER_RTO_S = 30
# Time for WAL already on the wire to land on the replicas before their positions are read.
IN_FLIGHT_S = 0.2


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def set_replication(fleet: Fleet, sync) -> str:
    """make replication SYNC=sync; returns the synchronous_standby_names the primary applies."""
    run = _make("replication", f"ENV={fleet.env}", f"SYNC={sync}")
    if run.returncode:
        raise DrillError(f"make replication SYNC={sync} failed:\n{run.stdout[-3000:]}")
    rows = fleet.sql(fleet.hosts("db_primary")[0], "SHOW synchronous_standby_names")
    return rows[0][0] if rows else ""


def _replication(sync: int):
    """A drill's setup: synchronous replication over `sync` replicas (0: asynchronous) at once
    (make replication), kept by the drill's provisions; its heal sets the model's value again."""

    def setup(fleet: Fleet, notes: dict) -> None:
        notes["_sync"] = str(sync)
        notes["synchronous_standbys"] = sync
        notes["synchronous_standby_names"] = set_replication(fleet, sync)

    return setup


def _crash_primary(fleet: Fleet, notes: dict) -> None:
    """The primary's PostgreSQL dies (every process of its unit SIGKILLed) and stays down. The
    drill then does what the operator would: make failover to the replica that received the
    most WAL."""
    old = notes["old_primary"] = fleet.hosts("db_primary")[0]
    unit = f"postgresql@{fleet.setting('postgresql_version')}-{fleet.setting('postgresql_cluster')}"
    fleet.exec(old, "systemctl", "kill", "--signal=SIGKILL", unit)
    notes["crashed_at"] = time.time()
    time.sleep(IN_FLIGHT_S)
    replicas = fleet.hosts("db_replica")
    # Read side by side: the writes wait for make failover, which waits for these.
    with ThreadPoolExecutor(len(replicas)) as pool:
        lsns = pool.map(
            lambda host: fleet.sql(host, "SELECT pg_last_wal_receive_lsn()")[0][0], replicas
        )
        received = dict(zip(replicas, lsns, strict=True))
    notes["received"] = received
    notes["new_primary"] = max(received, key=lambda host: (_lsn(received[host]), host))
    _new_primary(fleet, notes, "failover", "failover", notes["new_primary"])
    notes["primary_after_failover"] = fleet.hosts("db_primary")[0]


def _fail_back(fleet: Fleet, notes: dict) -> None:
    """The old primary (rejoined by the failover) becomes the primary again, and the fleet
    replicates as its model says."""
    _switch_back(fleet, notes)
    set_replication(fleet, fleet.setting("postgresql_synchronous_standbys"))


def _judge_failover(o: Outcome, fleet: Fleet) -> list[Verdict]:
    crashed = o.notes["crashed_at"]
    # The failover's window ends where the heal's switch back starts: a write that fails in
    # that planned switchover is counted apart (switchback_failed_writes), not in the RTO.
    switched_back = o.notes.get("switchback_at", float("inf"))
    posts = [r.time for r in o.failed_of("POST") if r.time >= crashed]
    failed_writes = [t for t in posts if t < switched_back]
    # The outage ends when writes work again: at the first write sent after the crash that was
    # acknowledged, and not before the last failed request. Takers whose write failed start
    # again at the landing page, which fails too while the primary is away (the replicas' lag
    # is judged against it): the last failed write alone would end the window while nobody
    # could write yet (measured: 8.16 s, where the first acknowledged write came at 26.98 s).
    failed = [r.time for r in o.failed if crashed <= r.time < switched_back]
    written = [
        r.time
        for r in o.judged
        if r.ok and r.name.endswith("POST") and r.started >= crashed and r.time < switched_back
    ]
    o.notes["last_failure_s"] = round(max(failed) - crashed, 2) if failed else 0.0
    o.notes["first_write_s"] = round(min(written) - crashed, 2) if written else None
    o.notes["rto_s"] = max(o.notes["last_failure_s"], o.notes["first_write_s"] or 0.0)
    o.notes["failed_writes"] = len(failed_writes)
    o.notes["switchback_failed_writes"] = len(posts) - len(failed_writes)
    verdicts = [
        Verdict(
            "the replica that received the most WAL became the primary, then the old one again",
            f"received {o.notes['received']}; {o.notes.get('primary_after_failover')} after the "
            f"failover, {fleet.hosts('db_primary')[0]} after the switch back",
            o.notes.get("primary_after_failover") == o.notes["new_primary"]
            and fleet.hosts("db_primary") == [o.notes["old_primary"]],
        ),
        Verdict(
            "every replica streams from the primary afterwards",
            json.dumps(_streaming(fleet), sort_keys=True),
            all(
                state == f"streaming from {fleet.address(fleet.hosts('db_primary')[0])}"
                for state in _streaming(fleet).values()
            ),
        ),
        Verdict(
            f"writes work again within {FAILOVER_RTO_S} s of the crash (RTO)",
            f"{o.notes['rto_s']} s: the first write sent after the crash acknowledged "
            f"{o.notes['first_write_s']} s after it, the last failed request "
            f"{o.notes['last_failure_s']} s after it ({len(failed_writes)} failed writes, "
            f"{len(failed) - len(failed_writes)} failed reads; "
            f"{o.notes['switchback_failed_writes']} failed writes in the switch back after it); "
            f"make failover took {o.notes['failover_s']} s"
            + ("" if o.notes.get("_provision") is False else " with its provision"),
            bool(failed_writes)
            and o.notes["first_write_s"] is not None
            and o.notes["rto_s"] <= FAILOVER_RTO_S,
        ),
        _only_503(o, required=True),
        no_stale_reads(o),
    ]
    # Asynchronous replication may lose what the primary acknowledged and had not yet sent: the
    # count is a figure (missing), not a verdict. Synchronous replication must lose nothing.
    if o.notes["synchronous_standbys"] > 0:
        verdicts.append(nothing_lost(o))
    return verdicts


def _failover_drill(name: str, sync: int) -> Drill:
    mode = f"synchronous replication (ANY {sync})" if sync else "asynchronous replication"
    return Drill(
        name,
        f"The primary's PostgreSQL crashes (SIGKILL) under {mode}: make failover to the replica "
        "that received the most WAL, then make switchover back",
        _crash_primary,
        _fail_back,
        0,
        _judge_failover,
        setup=_replication(sync),
    )


# --- A restore ----------------------------------------------------------------------------------

# Beyond archive_timeout (a segment that fills no faster is archived then), the time a segment
# takes to reach the repository and the restore to start reading it.
RESTORE_SLACK_S = 30
# Writes acknowledged this much before the newest one a restore holds must all be there: closer
# to it, commits and acknowledgements may cross.
RESTORE_CROSSING_S = 1.0


def _restore(fleet: Fleet, notes: dict) -> None:
    """make restore TARGET=latest into the scratch host, while the load goes on: the moment it
    begins stands for the disaster, and the ledger says what the restore got back."""
    notes["restore_began"] = time.time()
    run = _make("restore", f"ENV={fleet.env}")
    notes["restore_finished"] = time.time()
    notes["restore_s"] = round(notes["restore_finished"] - notes["restore_began"], 1)
    log = notes["_out"] / "restore.log"
    log.write_text(run.stdout + run.stderr)
    if run.returncode:
        raise DrillError(f"make restore failed (the whole log: {log}):\n{run.stdout[-3000:]}")
    report = json.loads((ROOT / "build" / fleet.env / "restore" / "restore.json").read_text())
    notes["backup_set"] = report["backup_set"]
    notes["last_replayed_commit"] = report["last_replayed_commit"]


def _judge_restore(o: Outcome, fleet: Fleet) -> list[Verdict]:
    began = o.notes["restore_began"]
    acknowledged = ledger.acknowledged_pages(o.notes["_out"] / "ledger.csv")
    held = ledger.held(fleet, fleet.hosts("restore")[0], list(acknowledged))
    newest = max((acknowledged[page] for page in held), default=None)
    before = [page for page, at in acknowledged.items() if at <= began]
    holes = [
        page
        for page, at in acknowledged.items()
        if newest and at <= newest - RESTORE_CROSSING_S and page not in held
    ]
    # `latest` replays what the archive holds when the restore reads it, which goes on while
    # the primary archives: the restore stands for a disaster at its end.
    o.notes["rpo_s"] = round(o.notes["restore_finished"] - newest, 2) if newest else None
    o.notes["acknowledged_before_restore"] = len(before)
    o.notes["restore_holds"] = len(held)
    o.notes["acknowledged_before_restore_not_held"] = sum(page not in held for page in before)
    bound = float(str(fleet.setting("postgresql_archive_timeout")).rstrip("s")) + RESTORE_SLACK_S
    return [
        Verdict(
            f"RPO within archive_timeout + {RESTORE_SLACK_S} s ({bound:g} s): the newest "
            "acknowledged write the restore holds, before the restore finished",
            f"{o.notes['rpo_s']} s; {o.notes['acknowledged_before_restore_not_held']} of "
            f"{len(before)} writes acknowledged before it began are not in it; restore "
            f"{o.notes['restore_s']} s (backup set {o.notes['backup_set']})",
            newest is not None and 0 <= o.notes["rpo_s"] <= bound,
        ),
        Verdict(
            "the restore holds every write acknowledged before its newest one",
            f"{len(holes)} missing of those acknowledged up to {RESTORE_CROSSING_S:g} s before it",
            newest is not None and not holes,
        ),
        no_failures(o),
        nothing_lost(o),
    ]


DRILLS = {
    "deploy": Drill(
        "deploy",
        "A new release rolls out, host by host (make deploy)",
        _deploy,
        _nothing,
        0,
        _judge_roll,
    ),
    "deploy-broken": Drill(
        "deploy-broken",
        "A release that cannot serve is deployed: the first host fails its readiness gate, "
        "goes back to its release, and the roll stops",
        _deploy_broken,
        _nothing,
        0,
        _judge_deploy_broken,
    ),
    "rollback": Drill(
        "rollback",
        "The web hosts roll back to the release they served before",
        _rollback,
        _nothing,
        0,
        _judge_roll,
    ),
    "web-kill": Drill(
        "web-kill",
        "gunicorn on a web host is killed (SIGKILL); systemd restarts it",
        _kill_gunicorn,
        _nothing,
        0,
        _judge_web_host,
    ),
    "web-stop": Drill(
        "web-stop",
        "A web host stops hard (its container killed), then starts again",
        _stop_host,
        _start_host,
        15,
        _judge_web_host,
    ),
    "pgbouncer-reload": Drill(
        "pgbouncer-reload",
        "pgbouncer on a web host reloads its configuration",
        _systemctl("web", "reload", "pgbouncer"),
        _nothing,
        0,
        _judge_clean,
    ),
    "pgbouncer-restart": Drill(
        "pgbouncer-restart",
        "pgbouncer on a web host restarts",
        _systemctl("web", "restart", "pgbouncer"),
        _nothing,
        0,
        _judge_bounded,
    ),
    "cache-restart": Drill(
        "cache-restart",
        "The cache Redis restarts",
        _systemctl("cache", "restart", "redis-server@cache"),
        _nothing,
        0,
        _judge_clean,
    ),
    "sessions-restart": Drill(
        "sessions-restart",
        "The session store Redis restarts (its AOF keeps every session)",
        _systemctl("cache", "restart", "redis-server@sessions"),
        _nothing,
        0,
        _judge_clean,
    ),
    "sessions-full": Drill(
        "sessions-full",
        f"The session store is full for {SESSIONS_FULL_S} s (it refuses writes)",
        _fill_sessions,
        _empty_sessions,
        SESSIONS_FULL_S,
        _judge_sessions_full,
    ),
    "web-db-cut": Drill(
        "web-db-cut",
        f"A web host is cut off from every database server for {WEB_CUT_S} s (packets dropped)",
        _cut_web_from_db,
        _reconnect_web_to_db,
        WEB_CUT_S,
        _judge_web_db_cut,
    ),
    "db-restart": Drill(
        "db-restart",
        "Every database server restarts (make restart-db): replicas in turn, then the primary "
        "behind paused pgbouncer pools",
        _restart_db,
        _nothing,
        0,
        _judge_db_restart,
    ),
    "scale": Drill(
        "scale",
        "A web host and a replica are added to the inventory and provisioned under the load, "
        "then retired the same way",
        _scale_out,
        _scale_in,
        SCALE_HOLD_S,
        _judge_scale,
    ),
    "primary-blip": Drill(
        "primary-blip",
        f"The primary is away for {PRIMARY_AWAY_S} s (PostgreSQL stopped, then started)",
        _stop_primary,
        _start_primary,
        PRIMARY_AWAY_S,
        _judge_primary_blip,
    ),
    "replica-stop": _replica_drill(
        "replica-stop",
        "Every replica's PostgreSQL stops, then starts",
        _replica_postgresql("stop"),
        _replica_postgresql("start"),
    ),
    "replica-paused": _replica_drill(
        "replica-paused",
        "Every replica pauses its WAL replay, then resumes it",
        _replay("pg_wal_replay_pause"),
        _replay("pg_wal_replay_resume"),
    ),
    "switchover": Drill(
        "switchover",
        "The first replica becomes the primary (make switchover), then the old primary again",
        _switch_to_a_replica,
        _switch_back,
        0,
        _judge_switchover,
    ),
    "failover-async": _failover_drill("failover-async", 0),
    "failover-sync": _failover_drill("failover-sync", 1),
    "restore": Drill(
        "restore",
        "make restore TARGET=latest into the scratch host, under the load: its RPO against the "
        "ledger",
        _restore,
        _nothing,
        0,
        _judge_restore,
    ),
    "replica-cut": _replica_drill(
        "replica-cut",
        "Every replica is cut off from the primary by a firewall rule (packets dropped)",
        _each_replica(_cut_from_primary),
        _each_replica(_uncut),
    ),
}


class DrillError(RuntimeError):
    """A drill could not inject or heal its fault."""


def _nft_list(fleet: Fleet, host: str, *what: str) -> str | None:
    """`nft list <what>` on the host: what it prints, or None if there is no such object. Any
    other failure (nft's, docker's) is an error, never taken for an answer."""
    listed = fleet.run(host, "nft", "list", *what)
    if listed.returncode == 0:
        return listed.stdout
    if "No such file or directory" in listed.stderr:
        return None
    raise DrillError(f"{host}: nft list {' '.join(what)} failed: {listed.stderr.strip()}")


def _firewall_set(fleet: Fleet, host: str, name: str) -> str:
    """The elements of a set in the host's firewall (roles/common, tally.nft.j2), as nft
    prints them; empty if the set is."""
    listed = _nft_list(fleet, host, "set", "inet", "tally_filter", name)
    if listed is None:
        raise DrillError(f"{host}: its firewall has no set {name}")
    found = re.search(r"elements = \{([^}]*)\}", listed)
    return found.group(1).strip() if found else ""


def _not_whole(fleet: Fleet) -> list[str]:
    """What keeps the fleet from serving whole: a cut the drills made, a web host drained or
    out of a load balancer's rotation, not ready, or without a usable replica."""
    problems = [
        f"{host}: the drills' table {CUT_TABLE} still cuts it off"
        for host in sorted({h for g in ("web", "db") for h in fleet.hosts(g)})
        if _nft_list(fleet, host, "table", "inet", CUT_TABLE) is not None
    ]
    problems += [
        f"{lb}: the upstream check holds {shunned} out of rotation (the `shunned` set)"
        for lb in fleet.hosts("lb")
        if (shunned := _firewall_set(fleet, lb, "shunned"))
    ]
    aliases = [r["alias"] for r in fleet.replicas()]
    for web in fleet.hosts("web"):
        if _firewall_set(fleet, web, "draining"):
            problems.append(f"{web}: drained (its app port is in the firewall's `draining` set)")
        ready = _readyz(fleet, web)
        if not ready or not ready.get("ready"):
            problems.append(f"{web}: not ready: /readyz answered {ready}")
            continue
        problems += [
            f"{web}: {alias} not usable ({ready['replicas'].get(alias)})"
            for alias in aliases
            if not ready["replicas"].get(alias, {}).get("ok")
        ]
    return problems


def _wait_whole(fleet: Fleet) -> None:
    """A drill starts from a whole fleet: a fault that an earlier drill (or a person) left in
    place would otherwise be measured as this drill's cost. A fleet still healing gets time."""
    deadline = time.time() + WHOLE_S
    while problems := _not_whole(fleet):
        if time.time() > deadline:
            raise DrillError(
                f"the fleet was not whole after {WHOLE_S} s, and the drill would measure what "
                "broke it: " + "; ".join(problems)
            )
        time.sleep(2)


# --- Running them -----------------------------------------------------------------------------


def run_drill(fleet: Fleet, drill: Drill, out: Path, light: bool, notes=None) -> Outcome:
    """One drill's course: load, fault, heal, load again, stop, reconcile."""
    shape = LIGHT_ARGS if light else ["--shape", "soak"]
    args = arguments([fleet.env, *shape, "--seconds", str(MAX_LOAD_S)])
    the_plan = build_plan(args, fleet)
    notes = dict(notes or {}, _out=out)
    _wait_whole(fleet)
    if drill.setup:
        drill.setup(fleet, notes)
    with runner.background(fleet, the_plan, out):
        start = time.time() + the_plan.warmup_s
        if drill.watch:
            notes["_watch"] = drill.watch(fleet)
            notes["_watch"].start()
        time.sleep(STEADY_S)
        fault = time.time()
        print(f"drill {drill.name}: {drill.title}", flush=True)
        drill.inject(fleet, notes)
        time.sleep(max(0.0, drill.hold_s - (time.time() - fault)))
        heal = time.time()
        drill.heal(fleet, notes)
        time.sleep(AFTER_S)
        end = time.time()
        if drill.watch:
            notes["_watch"].stop()
    requests = analysis.read_requests(out / "requests.csv")
    reconciled = ledger.reconcile(fleet, out / "ledger.csv")
    reconciled["rereads"], reconciled["stale_reads"] = ledger.stale_reads(out / "rereads.csv")
    return Outcome(drill.name, drill.title, requests, start, fault, heal, end, reconciled, notes)


def timeline(o: Outcome, folder: Path) -> str:
    """Requests, failures and p95 per second around the fault, as an SVG."""
    seconds = range(int(o.start - o.fault), int(o.end - o.fault) + 1)
    per: dict[int, list[analysis.Request]] = {s: [] for s in seconds}
    for r in o.judged:
        per.setdefault(math.floor(r.time - o.fault), []).append(r)
    xs = sorted(per)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
    top.plot(xs, [len(per[x]) for x in xs], label="requests/s", color="0.3")
    top.bar(xs, [sum(not r.ok for r in per[x]) for x in xs], color="tab:red", label="failed")
    top.set_ylabel("per second")
    top.legend(fontsize=7)
    p95 = [analysis.percentile([r.response_ms for r in per[x]], 95) for x in xs]
    bottom.plot(xs, p95, color="tab:blue")
    bottom.set_ylabel("p95 ms")
    bottom.set_xlabel("seconds from the fault")
    for ax in (top, bottom):
        ax.axvspan(0, max(o.heal - o.fault, 0.3), color="tab:red", alpha=0.12)
    fig.suptitle(o.title, fontsize=9)
    name = f"{o.name}.svg"
    fig.tight_layout()
    fig.savefig(folder / name, format="svg", bbox_inches="tight")
    plt.close(fig)
    return name


def section(o: Outcome, verdicts: list[Verdict], plot: str) -> str:
    figures = o.figures()
    lines = [f"## {o.name}: {o.title}", ""]
    lines += ["| verdict | measured | |", "| --- | --- | --- |"]
    lines += [f"| {v.name} | {v.measured} | {'PASS' if v.passed else 'FAIL'} |" for v in verdicts]
    lines += ["", "| figure | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in figures.items()]
    lines += ["", f"![timeline]({o.name}/{plot})", ""]
    return "\n".join(lines)


def run(fleet: Fleet, names: list[str], out: Path, light: bool, notes=None) -> dict:
    """Run drills one after another; write the report; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"env": fleet.env, "light": light, "drills": {}}
    sections = [f"# Drills on {fleet.env} ({'light load' if light else 'the target load'})", ""]
    try:
        for name in names:
            drill = DRILLS[name]
            folder = out / name
            try:
                outcome = run_drill(fleet, drill, folder, light, (notes or {}).get(name))
            except DrillError as error:
                # The next drill starts only once the fleet is whole again, or names what is not.
                sections += [f"## {name}: {drill.title}", "", f"It did not run to its end: {error}"]
                summary["drills"][name] = {"error": str(error), "passed": False}
                print(f"  {name}: FAIL it did not run to its end: {error}", flush=True)
                continue
            verdicts = drill.judge(outcome, fleet)
            plot = timeline(outcome, folder)
            sections.append(section(outcome, verdicts, plot))
            summary["drills"][name] = {
                "figures": outcome.figures(),
                "verdicts": [asdict(v) for v in verdicts],
                "passed": all(v.passed for v in verdicts),
            }
            for v in verdicts:
                print(
                    f"  {name}: {'PASS' if v.passed else 'FAIL'} {v.name}: {v.measured}", flush=True
                )
    finally:  # the drills that ran keep their report, whatever stopped the others
        (out / "index.md").write_text("\n".join(sections))
        (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.drills", description=__doc__)
    p.add_argument("env")
    p.add_argument("names", nargs="*", help=f"drills to run (default: all): {', '.join(DRILLS)}")
    p.add_argument("--light", action="store_true", help="a light load instead of the target's")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    unknown = sorted(set(args.names) - set(DRILLS))
    if unknown:
        p.error(f"unknown drill(s) {', '.join(unknown)}; drills: {', '.join(DRILLS)}")
    fleet = Fleet.of(args.env)
    out = report_folder(args.env, "drills", args.out)
    summary = run(fleet, args.names or list(DRILLS), out, args.light)
    print(f"drills: report {out / 'index.md'}")
    failed = [name for name, d in summary["drills"].items() if not d["passed"]]
    if failed:
        print(f"drills: FAILED {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
