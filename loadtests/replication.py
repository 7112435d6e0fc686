"""python -m loadtests.replication ENV: what synchronous replication costs, side by side.

The target load (the capacity model's soak) runs in rounds, asynchronous then synchronous
(`make replication SYNC=0`, then `SYNC=1`: ANY 1 of the replicas), each round the same length,
so that the machine's drift over the run falls on both alike. Each run keeps its ledger of
acknowledged writes. The figures: page submissions/s, the p50 and p95 of a page POST as the
client sees it and inside the app (Server-Timing), and the mean time a transaction holds a
pgbouncer server connection; and, for the backups' inputs, the WAL the primary wrote per
acknowledged page and the database's growth per completed survey. `sync_commit_ms` (the
capacity model's input) is the difference of the POST's in-app p50, pooled over the rounds.
The model's own setting is applied again at the end, also when the run fails. `make bench-sync`
runs it; the report goes to build/ENV/replication/<time>/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from loadtests import analysis, runner
from loadtests.__main__ import arguments, build_plan
from loadtests.drills import set_replication
from loadtests.fleet import Fleet, report_folder

MODES = {"async": 0, "sync": 1}
POST = "page POST"


def wal_and_size(fleet: Fleet) -> tuple[int, int]:
    """The primary's WAL position (bytes) and its database's size (bytes)."""
    row = fleet.sql(
        fleet.hosts("db_primary")[0],
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_database_size(current_database())",
    )[0]
    return int(float(row[0])), int(row[1])


def measure(run: runner.Run, before: tuple[int, int], after: tuple[int, int]) -> dict:
    """One round's figures, over its judged stage, and the WAL and database growth over the
    whole run per acknowledged page and per completed survey (the backups' inputs)."""
    stage = run.stages[-1]
    posts = [r for r in run.requests if stage.start <= r.time <= stage.end and r.name == POST]
    ok = [r for r in posts if r.ok]
    inside = [r.server_ms for r in ok if r.server_ms is not None]
    return {
        "submissions_per_s": round(stage.submissions_per_s, 2),
        "requests": stage.requests,
        "failures": stage.failures,
        "p95_ms": round(stage.p95_ms, 1),
        "post_p50_ms": round(analysis.percentile([r.response_ms for r in ok], 50), 2),
        "post_p95_ms": round(analysis.percentile([r.response_ms for r in ok], 95), 2),
        "post_server_p50_ms": round(analysis.percentile(inside, 50), 2),
        "post_server_mean_ms": round(statistics.fmean(inside), 2) if inside else None,
        "db_transaction_ms": round(run.extra["db_transaction_ms"], 3),
        "acknowledged": run.ledger["acknowledged"],
        "missing": run.ledger["missing_primary"] + run.ledger["missing_completed"],
        "wal_kb_per_submission": round(
            (after[0] - before[0]) / 1024 / run.ledger["acknowledged"], 2
        )
        if run.ledger["acknowledged"]
        else None,
        "db_kb_per_survey": round((after[1] - before[1]) / 1024 / run.ledger["completed"], 2)
        if run.ledger["completed"]
        else None,
    }


def summarise(rounds: list[dict]) -> dict:
    def pooled(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds if r["mode"] == mode)

    keys = ("submissions_per_s", "p95_ms", "post_p50_ms", "post_p95_ms", "post_server_p50_ms")
    keys += ("db_transaction_ms", "wal_kb_per_submission", "db_kb_per_survey")
    table = {mode: {key: pooled(mode, key) for key in keys} for mode in MODES}
    return {
        **table,
        "sync_commit_ms": round(
            table["sync"]["post_server_p50_ms"] - table["async"]["post_server_p50_ms"], 2
        ),
        "sync_over_async_submissions": round(
            table["sync"]["submissions_per_s"] / table["async"]["submissions_per_s"], 3
        ),
        "missing": sum(r["missing"] for r in rounds),
        "acknowledged": sum(r["acknowledged"] for r in rounds),
    }


def page(summary: dict, rounds: list[dict]) -> str:
    lines = ["# Synchronous replication's cost", ""]
    lines += ["| round | mode | " + " | ".join(k for k in rounds[0] if k not in ("mode", "round"))]
    lines += ["| --- " * (len(rounds[0])) + "|"]
    for r in rounds:
        rest = [str(v) for k, v in r.items() if k not in ("mode", "round")]
        lines.append(f"| {r['round']} | {r['mode']} | " + " | ".join(rest) + " |")
    lines += [
        "",
        "Medians over the rounds:",
        "",
        "| figure | async | sync |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {summary['async'][k]} | {summary['sync'][k]} |" for k in summary["async"]]
    lines += [
        "",
        f"sync_commit_ms (in-app POST p50, sync - async): {summary['sync_commit_ms']}; "
        f"submissions/s sync/async: {summary['sync_over_async_submissions']}; "
        f"{summary['missing']} of {summary['acknowledged']} acknowledged pages missing.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.replication", description=__doc__)
    p.add_argument("env")
    p.add_argument("--rounds", type=int, default=2, help="async/sync pairs (default 2)")
    p.add_argument("--seconds", type=float, default=90, help="length of each run (default 90)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    fleet = Fleet.of(args.env)
    if not fleet.hosts("db_replica"):
        p.error(f"{args.env} has no replica: synchronous replication needs one")
    out = report_folder(args.env, "replication", args.out)
    the_plan = build_plan(
        arguments([args.env, "--shape", "soak", "--seconds", str(args.seconds)]), fleet
    )
    rounds = []
    try:
        for n in range(1, args.rounds + 1):
            for mode, sync in MODES.items():
                applied = set_replication(fleet, sync)
                before = wal_and_size(fleet)
                run = runner.execute(fleet, the_plan, out / f"{n}-{mode}")
                figures = measure(run, before, wal_and_size(fleet))
                rounds.append({"round": n, "mode": mode, "applied": applied, **figures})
                print(f"replication: round {n} {mode} ({applied!r}): {rounds[-1]}", flush=True)
    finally:
        set_replication(fleet, fleet.setting("postgresql_synchronous_standbys"))
    summary = summarise(rounds)
    (out / "replication.json").write_text(json.dumps({"rounds": rounds, **summary}, indent=2))
    (out / "index.md").write_text(page(summary, rounds))
    print(f"replication: {json.dumps(summary)}")
    print(f"replication: report {out / 'index.md'}")
    return 1 if summary["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
