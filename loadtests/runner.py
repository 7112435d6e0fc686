"""One load test run: Locust against a fleet while the samplers watch, then the ledger."""

from __future__ import annotations

import csv
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loadtests import analysis, ledger, plan
from loadtests.fleet import ROOT, Fleet, vault
from loadtests.samplers import Sampling

IDLE_S = 5
PROFILES = {
    "taker": ["SurveyTaker"],
    "viewer": ["ResultsViewer"],
    "mixed": ["SurveyTaker", "ResultsViewer"],
    "trivial": ["TrivialView"],
}


@dataclass
class Run:
    requests: list[analysis.Request]
    samples: list[tuple]
    stages: list[analysis.StageResult]
    ledger: dict
    extra: dict = field(default_factory=dict)

    @property
    def generator_cpu(self) -> list[float]:
        return [v for t, h, m, v in self.samples if h == "cpu" and m == "generator"]


def preflight(fleet: Fleet) -> None:
    if not fleet.ca.exists():
        sys.exit(
            f"No CA at {fleet.ca}: provision the fleet first (make provision ENV={fleet.env})."
        )
    context = ssl.create_default_context(cafile=str(fleet.ca))
    try:
        with urllib.request.urlopen(f"{fleet.url}/readyz", context=context, timeout=10) as r:
            r.read()
    except OSError as error:
        sys.exit(
            f"The fleet does not answer at {fleet.url}/readyz ({error}): is ENV={fleet.env} "
            f"provisioned (make provision ENV={fleet.env})?"
        )


def run_locust(the_plan: plan.Plan, out: Path, processes: int) -> int:
    argv = [
        str(ROOT / ".venv/bin/locust"),
        "-f",
        str(ROOT / "loadtests/locustfile.py"),
        "--headless",
        "--host",
        the_plan.host,
        "--html",
        str(out / "locust.html"),
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    if processes > 1:
        argv += ["--processes", str(processes)]
    argv += PROFILES[the_plan.profile]
    env = {
        **os.environ,
        "TALLY_LOAD_PLAN": str(out / "plan.json"),
        "TALLY_LOAD_OUT": str(out),
        "PYTHONPATH": str(ROOT),
    }
    with (out / "locust.log").open("w") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process


@contextmanager
def background(fleet: Fleet, the_plan: plan.Plan, out: Path) -> Iterator[subprocess.Popen]:
    """Run the plan's load while the caller does something else (a deploy, a drill), and stop
    it when the caller is done: Locust writes requests.csv, ledger.csv and rereads.csv to `out`
    as it quits."""
    out.mkdir(parents=True, exist_ok=True)
    stop = out / "stop"  # the locustfile's shape ends the run when it appears
    stop.unlink(missing_ok=True)
    the_plan.save(out / "plan.json")
    preflight(fleet)
    process = run_locust(the_plan, out, 1)
    try:
        yield process
    finally:
        stop.touch()
        try:  # the shape is polled every second; the users then finish their requests
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            process.wait()
    if not (out / "requests.csv").exists():
        print((out / "locust.log").read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"Locust left no results; its log: {out / 'locust.log'}")


def pgbouncer_totals(fleet: Fleet, password: str) -> tuple[float, float]:
    """Transactions and their total time (µs) pgbouncer has counted, over every web host."""
    count = micros = 0.0
    for host in fleet.hosts("web"):
        for row in fleet.pgbouncer(host, "SHOW STATS", password):
            if row.get("database") != "pgbouncer":
                count += float(row["total_xact_count"])
                micros += float(row["total_xact_time"])
    return count, micros


def locust_count(path: Path) -> int:
    """Requests Locust itself counted (its stats CSV), to check that no record went missing on
    the way from a worker to the master."""
    with path.open() as f:
        return next(
            int(row["Request Count"]) for row in csv.DictReader(f) if row["Name"] == "Aggregated"
        )


def execute(fleet: Fleet, the_plan: plan.Plan, out: Path, processes: int = 1) -> Run:
    """Run the plan's stages and measure them; raises SystemExit when Locust made no results."""
    out.mkdir(parents=True, exist_ok=True)
    the_plan.save(out / "plan.json")
    preflight(fleet)
    password = vault(fleet.env)["vault_pgbouncer_stats_password"]
    before = pgbouncer_totals(fleet, password)
    sampling = Sampling(fleet, out, the_plan.seconds + IDLE_S)
    process = None
    try:
        sampling.start()
        idle_from = time.time()
        time.sleep(IDLE_S)  # the fleet at rest: the samplers' own cost and background work
        idle_to = time.time()
        print(
            f"loadtest: {the_plan.shape} against {fleet.url}: "
            + ", ".join(f"{s.label}: {s.users} users, {s.seconds:g} s" for s in the_plan.stages),
            flush=True,
        )
        process = run_locust(the_plan, out, processes)
        sampling.watch_generator(process.pid)
        status = process.wait()
    finally:  # also on Ctrl-C: no Locust and no probe left running
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait()
        sampling.stop()
    after = pgbouncer_totals(fleet, password)
    if not (out / "requests.csv").exists():
        print((out / "locust.log").read_text()[-3000:], file=sys.stderr)
        sys.exit(f"Locust exited {status} without results; its log: {out / 'locust.log'}")

    requests = analysis.read_requests(out / "requests.csv")
    samples = analysis.read_samples(out / "samples.csv")
    starts = analysis.load_json(out / "stages.json", [])
    run_end = max((r.time for r in requests), default=time.time())
    idle = analysis.fleet_cores(samples, idle_from, idle_to)
    stages = [
        analysis.measure_stage(stage, start, end, requests, samples, the_plan, idle)
        for stage, start, end in analysis.stage_windows(the_plan, starts, run_end)
    ]
    reconciled = ledger.reconcile(fleet, out / "ledger.csv")
    reconciled["generator_processes"] = processes
    reconciled["rereads"], reconciled["stale_reads"] = ledger.stale_reads(out / "rereads.csv")
    # Locust's own count can trail ours by a request or two finishing as it stops; only a
    # shortfall means records were lost.
    reconciled["records_lost"] = max(0, locust_count(out / "locust_stats.csv") - len(requests))
    transactions = after[0] - before[0]
    extra = {
        "db_transactions": transactions,
        "db_transaction_ms": (after[1] - before[1]) / transactions / 1000
        if transactions
        else float("nan"),
        "idle_cores": idle,
    }
    return Run(requests, samples, stages, reconciled, extra)
