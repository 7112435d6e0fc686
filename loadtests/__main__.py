"""python -m loadtests ENV [--shape step|calibration|soak|light] [options]

Runs Locust headless against ENV's local fleet (https://127.0.0.1:<port> only), samples the
fleet meanwhile, reconciles the ledger with the database and writes a report folder
(index.html, summary.json, the raw CSVs). Prints the report's path; exits 1 when a judged
verdict fails. `--shape calibration` also writes the measured service times, with the machine's
fingerprint, into deploy/ENV/calibration.yml (never into capacity.yml).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from capacity import calibration
from capacity import model as capacity_model
from loadtests import analysis, plan, report, runner
from loadtests.fleet import Fleet, report_folder

# The verdicts each shape is judged on; the others are printed.
SOAK_JUDGED = {
    "server connections",
    "no errors below capacity",
    "pgbouncer waits below capacity",
    "p95 at the target load",
    "ledger",
    "no stale reads",
    "valid run",
}
JUDGED = {
    "step": SOAK_JUDGED | analysis.CAPACITY_VERDICTS,
    "soak": SOAK_JUDGED,
    "light": {"no errors below capacity", "ledger", "no stale reads"},
    "calibration": {"no errors below capacity", "ledger", "no stale reads", "valid run"},
}


def arguments(argv=None):
    p = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__.split("\n\n")[1])
    p.add_argument("env", help="environment under deploy/ (a local fleet)")
    p.add_argument("--shape", choices=sorted(JUDGED), default="step")
    p.add_argument(
        "--profile",
        choices=sorted(runner.PROFILES),
        default="taker",
        help="taker: the model's mix; viewer: results pages only; mixed: 9 takers to 1 viewer",
    )
    p.add_argument("--think", type=float, help="mean think time per page, s (default: the model's)")
    p.add_argument(
        "--step-seconds", type=float, default=60, help="length of each step (step shape)"
    )
    p.add_argument("--seconds", type=float, help="length of a calibration, soak or light run")
    p.add_argument("--users", type=int, default=3, help="users of a calibration or light run")
    p.add_argument("--warmup", type=float, default=10, help="seconds cut from each stage's start")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Locust processes on this machine (>1: a master and that many workers)",
    )
    p.add_argument(
        "--out", type=Path, help="report folder (default build/ENV/loadtest/<time>-<shape>)"
    )
    return p.parse_args(argv)


def deployed_worker_slots(fleet: Fleet, threads: int) -> int:
    """The request slots the web hosts really run: gunicorn's workers now, times threads."""
    workers = {host: fleet.gunicorn_workers(host) for host in fleet.hosts("web")}
    idle = [host for host, count in workers.items() if not count]
    if idle:
        raise SystemExit(f"No gunicorn workers run on {', '.join(idle)}: is the app up?")
    return sum(workers.values()) * threads


def build_plan(args, fleet: Fleet) -> plan.Plan:
    model = capacity_model.evaluate(capacity_model.load(args.env))
    predicted = model.predictions()
    think = args.think
    if think is None:  # calibration wants many requests from few users: a short think
        think = CALIBRATION_THINK_S if args.shape == "calibration" else predicted.think_time_s
    if args.shape == "step":
        stages = plan.step_stages(predicted, think, args.step_seconds)
    elif args.shape == "soak":
        stages = plan.soak_stages(predicted, think, args.seconds or 1800)
    elif args.shape == "light":
        stages = plan.light_stages(predicted, think, args.seconds or 45, args.users)
    else:
        stages = plan.calibration_stages(predicted, think, args.seconds or 60, args.users)
    return plan.Plan(
        shape=args.shape,
        env=args.env,
        host=fleet.url,
        ca=str(fleet.ca),
        think_time_s=think,
        stages=stages,
        profile=args.profile,
        results_view_share=predicted.results_views_per_survey,
        warmup_s=args.warmup,
        model={
            **plan.report_model(model),
            # Utilisation is judged against the worker slots the fleet really runs.
            "deployed_worker_slots": deployed_worker_slots(fleet, model.values["gunicorn_threads"]),
        },
    )


CALIBRATED_KEYS = ("page_get", "page_post", "start", "results")
CALIBRATION_THINK_S = 0.3
# Where calibrations are written (a test points it at a copy).
DEPLOY_DIR = capacity_model.DEPLOY_DIR


def write_calibration(env: str, alone, target, db_transaction_ms: float, idle: float) -> dict:
    """Write measured service times (from the stage with few users), CPU per request above the
    fleet at rest (from the stage at the target rate) and the CPU at rest to
    deploy/ENV/calibration.yml, with this machine's fingerprint; refuse unsound values."""
    service = alone.service_ms
    values = {}
    for endpoint in CALIBRATED_KEYS:
        if endpoint not in service:
            raise SystemExit(f"calibration measured no {endpoint} requests; run it longer")
        mean, p99, _count = service[endpoint]
        values[f"{endpoint}_ms"] = round(mean, 1)
        values[f"{endpoint}_p99_ms"] = round(p99)
    measured = {
        "db_transaction_ms": db_transaction_ms,
        "cpu_ms_per_request": target.cpu_ms_per_request,
    }
    for name, value in {**measured, "cpu_idle_cores": idle}.items():
        if not math.isfinite(value) or value < 0 or (value == 0 and name in measured):
            raise SystemExit(f"calibration measured {name} = {value}; nothing written for {env}")
    values["db_transaction_ms"] = round(db_transaction_ms, 2)
    values["cpu_ms_per_request"] = round(target.cpu_ms_per_request, 1)
    values["cpu_idle_cores"] = round(idle, 2)
    inputs = capacity_model.load(env, DEPLOY_DIR)
    calibration.write(env, values, calibration.fingerprint(inputs), DEPLOY_DIR)
    return values


def main(argv=None) -> int:
    args = arguments(argv)
    fleet = Fleet.of(args.env)
    the_plan = build_plan(args, fleet)
    # Service times hold only where they were measured: say so before anything runs, and report
    # the capacity verdicts of such a run as uncalibrated rather than failed.
    stale = None if args.shape == "calibration" else calibration.stale_here(args.env)
    if stale:
        print(f"loadtest: {stale}", file=sys.stderr, flush=True)
        the_plan.model["uncalibrated"] = stale
    out = report_folder(args.env, "loadtest", args.out, suffix=f"-{args.shape}")
    run = runner.execute(fleet, the_plan, out, args.processes)
    verdict_list = analysis.verdicts(
        the_plan,
        run.stages,
        run.ledger,
        run.generator_cpu,
        JUDGED[args.shape],
        run.extra["idle_cores"],
    )
    failed = [
        v.name for v in verdict_list if v.judged and not v.uncalibrated and v.passed is not True
    ]
    if args.shape == "calibration" and not failed:
        written = write_calibration(
            args.env, *run.stages, run.extra["db_transaction_ms"], run.extra["idle_cores"]
        )
        run.extra["calibration"] = written
        path = calibration.path_of(args.env, DEPLOY_DIR)
        print(f"loadtest: wrote measured service times to {path}: {written}")
    index = report.write(
        out, the_plan, run.requests, run.samples, run.stages, verdict_list, run.ledger, run.extra
    )

    width = max(len(v.name) for v in verdict_list)
    for v in verdict_list:
        print(f"  {v.name:<{width}}  {v.word:<18} measured {v.measured}; predicted {v.predicted}")
    print(f"loadtest: report {index}")
    if failed:
        print(f"loadtest: FAILED verdicts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
