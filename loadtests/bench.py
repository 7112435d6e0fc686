"""python -m loadtests.bench ENV: what the tuning buys, measured side by side in one run.

The same climb (1, 2, 4 ... 64 users who never pause) against:
  tuned    the fleet as provisioned;
  naive    the same app and hosts as a default deployment would run it: gunicorn's defaults (one
           sync worker), straight to the primary (no pgbouncer, no replica, a connection per
           request), sessions in the database, no cache. Set up on the web hosts for the run
           and replaced by the tuned services afterwards, also when the run fails;
  trivial  the app's liveness view through the tuned stack: the framework's ceiling;
and pgbench running the app's page-submit transaction on the primary itself: the database's
write ceiling on this machine. Each gets the highest page submissions/s it reached with p95
within the objective (requests/s for the trivial view).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import ssl
import time
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from capacity import model as capacity_model
from loadtests import analysis, plan, report, runner
from loadtests.fleet import Fleet, report_folder

CLIMB_USERS = (1, 2, 4, 8, 16, 32, 64)
PGBENCH_CLIENTS = (1, 2, 4, 8)
NAIVE_ENV = "/run/tally-naive.env"  # tmpfs: gone at the next boot, like the bench itself
# A transient unit that failed stays loaded, and would block the next bench's systemd-run.
FORGET_NAIVE = (
    "systemctl stop tally-naive 2>/dev/null; systemctl reset-failed tally-naive 2>/dev/null; true"
)
PGBENCH_PREFIX = "pgbench-"  # prefix of the responses pgbench writes to, removed afterwards


def climb(values: dict, seconds: float, profile: str, env: str, fleet: Fleet) -> plan.Plan:
    stages = [plan.Stage(f"climb {n}", n, seconds, 0.0, spawn_rate=n) for n in CLIMB_USERS]
    return plan.Plan(
        "bench",
        env,
        fleet.url,
        str(fleet.ca),
        0.0,
        stages,
        profile=profile,
        warmup_s=5,
        model=values,
    )


def best(stages: list[analysis.StageResult], objective_ms: float, key: str):
    """The stage with the most `key` among those within the objective and without errors."""
    good = [s for s in stages if s.p95_ms <= objective_ms and s.failures == 0]
    return max(good, key=lambda s: getattr(s, key), default=None)


# --- The naive deployment ---------------------------------------------------------------------


def naive_environment(tuned: str, pgbouncer: str, primary: str) -> str:
    """The tuned env file, rewritten for a default deployment: `pgbouncer` and `primary` are
    host:port of the local pgbouncer and of the primary itself."""
    lines = [
        line
        for line in tuned.splitlines()
        if not line.startswith(("TALLY_REPLICA_URLS=", "TALLY_DB_CONN_MAX_AGE="))
    ]
    text = "\n".join(lines)
    text, found = re.subn(f"@{re.escape(pgbouncer)}/", f"@{primary}/", text)
    if found != 1:
        raise SystemExit("bench: TALLY_DATABASE_URL does not point at the local pgbouncer")
    return text + (
        '\nTALLY_DB_CONN_MAX_AGE="0"\nTALLY_CACHE_ENABLED="false"\n'
        'TALLY_SESSION_ENGINE="django.contrib.sessions.backends.db"\n'
    )


def start_naive(fleet: Fleet) -> None:
    primary = f"{fleet.address(fleet.hosts('db_primary')[0])}:{fleet.port('postgresql')}"
    pgbouncer = f"127.0.0.1:{fleet.port('pgbouncer')}"
    app_user, gunicorn = fleet.user("app"), fleet.gunicorn()
    for host in fleet.hosts("web"):
        tuned = fleet.exec(host, "cat", "/etc/tally/tally.env")
        fleet.exec(
            host,
            "sh",
            "-c",
            f"umask 077; cat > {NAIVE_ENV}",
            stdin=naive_environment(tuned, pgbouncer, primary),
        )
        fleet.exec(host, "sh", "-c", f"{FORGET_NAIVE}; systemctl stop tally.socket tally.service")
        fleet.exec(
            host,
            "systemd-run",
            "--unit=tally-naive",
            f"--uid={app_user}",
            f"--gid={app_user}",
            f"--property=EnvironmentFile={NAIVE_ENV}",
            gunicorn,
            "--bind",
            f"127.0.0.1:{fleet.port('gunicorn')}",
            "--bind",
            f"{fleet.address(host)}:{fleet.port('gunicorn')}",
            "tally.wsgi",
        )


def stop_naive(fleet: Fleet) -> None:
    """Put the tuned service back on every web host, each whatever happens to the others."""
    errors = []
    for host in fleet.hosts("web"):
        try:
            fleet.exec(
                host,
                "sh",
                "-c",
                f"{FORGET_NAIVE}; rm -f {NAIVE_ENV}; systemctl start tally.socket tally.service",
            )
        except RuntimeError as error:
            errors.append(str(error))
    if errors:
        raise SystemExit("bench: could not restore the tuned service: " + "; ".join(errors))


def wait_ready(fleet: Fleet, seconds: float = 60) -> None:
    """Until every web host answers through the load balancer (a few rounds of readyz)."""
    context = ssl.create_default_context(cafile=str(fleet.ca))
    deadline, streak = time.monotonic() + seconds, 0
    while streak < 2 * len(fleet.hosts("web")):
        try:
            with urllib.request.urlopen(f"{fleet.url}/readyz", context=context, timeout=5) as r:
                r.read()
                streak += 1
        except OSError as error:
            streak = 0
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {fleet.url}/readyz: {error}") from None
            time.sleep(0.5)


# --- pgbench ----------------------------------------------------------------------------------

SETUP_SQL = """
SELECT s.id, string_agg(q.id::text, ',' ORDER BY q.position)
FROM surveys_survey s JOIN surveys_page p ON p.survey_id = s.id AND p.position = 1
JOIN surveys_question q ON q.page_id = p.id
GROUP BY s.id ORDER BY count(*) DESC, s.id LIMIT 1;
"""


def pgbench_script(questions: list[str]) -> str:
    """The app's page submit (services.response_submit_page) as its SQL: the page's save in one
    statement (its own transaction), then the WAL position after its commit."""
    answers = json.dumps(
        [
            {"question_id": int(q), "choice_ids": [1], "scale_value": 3, "text_value": "Fine."}
            for q in questions
        ]
    )  # json.dumps puts a space after each colon: nothing pgbench would read as a :variable
    return f"""\\set r random(:lo, :hi)
WITH advanced AS (
  UPDATE surveys_response SET reached_page = GREATEST(reached_page, 2), updated_at = now()
   WHERE id = :r AND completed_at IS NULL AND reached_page >= 1
  RETURNING id
), saved AS (
  INSERT INTO surveys_answer
    (response_id, question_id, choice_ids, scale_value, text_value, submission_id, updated_at)
  SELECT advanced.id, a.question_id, a.choice_ids, a.scale_value, a.text_value,
         gen_random_uuid(), now()
    FROM advanced
   CROSS JOIN jsonb_to_recordset('{answers}'::jsonb)
         AS a(question_id bigint, choice_ids bigint[], scale_value smallint, text_value text)
  ON CONFLICT (response_id, question_id) DO UPDATE SET choice_ids = EXCLUDED.choice_ids,
    scale_value = EXCLUDED.scale_value, text_value = EXCLUDED.text_value,
    submission_id = EXCLUDED.submission_id, updated_at = EXCLUDED.updated_at
  RETURNING 1
)
SELECT (SELECT count(*) FROM advanced);
SELECT pg_current_wal_lsn();
"""


def pgbench(fleet: Fleet, seconds: float) -> list[dict]:
    host = fleet.hosts("db_primary")[0]
    survey, questions = fleet.psql(host, SETUP_SQL).strip().split("|")
    ids = fleet.psql(
        host,
        "INSERT INTO surveys_response (token, reached_page, started_at, updated_at, survey_id) "
        f"SELECT '{PGBENCH_PREFIX}' || n, 1, now(), now(), {int(survey)} "
        "FROM generate_series(1, 1000) AS n RETURNING id;",
    ).split()
    low, high = min(map(int, ids)), max(map(int, ids))
    results = []
    try:
        fleet.exec(
            host,
            "sh",
            "-c",
            "cat > /run/tally-bench-submit.sql",
            stdin=pgbench_script(questions.split(",")),
        )
        for clients in PGBENCH_CLIENTS:
            output = fleet.exec(
                host,
                "runuser",
                "-u",
                "postgres",
                "--",
                "pgbench",
                "-n",
                "-f",
                "/run/tally-bench-submit.sql",
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(int(seconds)),
                "-D",
                f"lo={low}",
                "-D",
                f"hi={high}",
                fleet.database,
            )
            tps = float(re.search(r"tps = ([\d.]+)", output).group(1))
            latency = float(re.search(r"latency average = ([\d.]+) ms", output).group(1))
            results.append({"clients": clients, "tps": tps, "latency_ms": latency})
            print(
                f"bench: pgbench {clients} clients: {tps:.0f} submits/s, {latency:.1f} ms",
                flush=True,
            )
    finally:
        fleet.psql(
            host,
            "DELETE FROM surveys_answer WHERE response_id IN (SELECT id FROM surveys_response "
            f"WHERE token LIKE '{PGBENCH_PREFIX}%');"
            f"DELETE FROM surveys_response WHERE token LIKE '{PGBENCH_PREFIX}%';",
        )
        fleet.exec(host, "rm", "-f", "/run/tally-bench-submit.sql")
    return results


# --- The run and its report -------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    p.add_argument("env")
    p.add_argument("--step-seconds", type=float, default=30)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    fleet = Fleet.of(args.env)
    inputs = capacity_model.load(args.env)
    values = {**capacity_model.evaluate(inputs).values, "calibrated": inputs.calibrated}
    objective = values["latency_p95_ms"]
    out = report_folder(args.env, "bench", args.out)

    measured = {}
    for name, profile in (("tuned", "taker"), ("trivial", "trivial"), ("naive", "taker")):
        the_plan = climb(values, args.step_seconds, profile, args.env, fleet)
        folder = out / name
        try:
            if name == "naive":
                start_naive(fleet)
            wait_ready(fleet)
            run = runner.execute(fleet, the_plan, folder)
        finally:
            if name == "naive":
                stop_naive(fleet)
                wait_ready(fleet)
        report.write(
            folder, the_plan, run.requests, run.samples, run.stages, [], run.ledger, run.extra
        )
        measured[name] = (run.stages, run.ledger)
    database = pgbench(fleet, args.step_seconds / 2)

    summary = summarise(measured, database, objective)
    (out / "bench.json").write_text(json.dumps(summary, indent=2, default=str))
    index = write_page(out, summary, measured, objective)
    for line in summary["lines"]:
        print(f"bench: {line}")
    print(f"bench: report {index}")
    lost = [n for n, (_, ledger) in measured.items() if ledger.get("missing_primary")]
    return 1 if lost or summary["tuned"] is None else 0


def summarise(measured, database, objective) -> dict:
    def row(name, key):
        stage = best(measured[name][0], objective, key)
        if stage is None:
            return None
        return {
            "users": stage.users,
            "requests_per_s": stage.rps,
            "p95_ms": stage.p95_ms,
            "submissions_per_s": stage.submissions_per_s,
        }

    tuned, naive, trivial = (
        row("tuned", "submissions_per_s"),
        row("naive", "submissions_per_s"),
        row("trivial", "rps"),
    )
    db = max(database, key=lambda r: r["tps"]) if database else None
    out = {
        "tuned": tuned,
        "naive": naive,
        "trivial": trivial,
        "pgbench": database,
        "objective_p95_ms": objective,
        "lines": [],
    }
    if tuned:
        share = tuned["submissions_per_s"] / tuned["requests_per_s"]
        out["submissions_per_request"] = share
        lines = [
            f"tuned: {tuned['submissions_per_s']:.1f} submissions/s "
            f"({tuned['requests_per_s']:.0f} requests/s, p95 {tuned['p95_ms']:.0f} ms, "
            f"{tuned['users']} users)"
        ]
        if naive:
            out["tuned_over_naive"] = tuned["submissions_per_s"] / naive["submissions_per_s"]
            lines.append(
                f"naive: {naive['submissions_per_s']:.1f} submissions/s; tuned/naive = "
                f"{out['tuned_over_naive']:.2f}x"
            )
        if trivial:
            ceiling = trivial["requests_per_s"] * share
            out["framework_ceiling_submissions_per_s"] = ceiling
            out["tuned_over_framework"] = tuned["submissions_per_s"] / ceiling
            lines.append(
                f"framework ceiling: {trivial['requests_per_s']:.0f} trivial requests/s "
                f"= {ceiling:.1f} submissions/s at this mix; tuned reaches "
                f"{out['tuned_over_framework']:.0%} of it"
            )
        if db:
            out["database_ceiling_submissions_per_s"] = db["tps"]
            out["tuned_over_database"] = tuned["submissions_per_s"] / db["tps"]
            lines.append(
                f"database ceiling (pgbench, {db['clients']} clients): {db['tps']:.0f} "
                f"submissions/s; tuned reaches {out['tuned_over_database']:.1%} of it"
            )
        out["lines"] = lines
    else:
        out["lines"] = [f"tuned: no stage kept p95 within {objective:.0f} ms without errors"]
    return out


def write_page(out: Path, summary: dict, measured: dict, objective: float) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name in ("tuned", "naive"):
        stages = measured[name][0]
        left.plot(
            [s.users for s in stages], [s.submissions_per_s for s in stages], "o-", label=name
        )
        right.plot([s.users for s in stages], [s.p95_ms for s in stages], "o-", label=name)
    stages = measured["trivial"][0]
    right.plot([s.users for s in stages], [s.p95_ms for s in stages], "o-", label="trivial view")
    for key, label, color in (
        ("framework_ceiling_submissions_per_s", "framework ceiling", "grey"),
        ("database_ceiling_submissions_per_s", "database ceiling (pgbench)", "black"),
    ):
        if key in summary:
            left.axhline(summary[key], linestyle="--", color=color, linewidth=0.8, label=label)
    right.axhline(objective, linestyle="--", color="red", linewidth=0.8, label="p95 objective")
    for ax, ylabel in ((left, "page submissions/s"), (right, "p95 ms")):
        ax.set_xscale("log", base=2)
        ax.set(xlabel="users (no think time)", ylabel=ylabel)
        ax.legend(fontsize=7)
    left.set_yscale("log")
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "bench.svg", format="svg")
    plt.close(fig)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(
            f"<td>{report._cell(s.__dict__[k])}</td>"
            for k in ("users", "rps", "submissions_per_s", "p50_ms", "p95_ms", "failures")
        )
        + "</tr>"
        for name, (stages, _) in measured.items()
        for s in stages
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary["lines"])
    pg = "".join(
        f"<tr><td>{r['clients']}</td><td>{r['tps']:.0f}</td><td>{r['latency_ms']:.1f}</td></tr>"
        for r in summary["pgbench"]
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Tally bench</title><style>body {{ font: 14px system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 6px; }}
img {{ width: 100%; max-width: 1100px; }}</style></head><body>
<h1>What the tuning buys</h1>
<p>Highest page submissions/s with p95 within {objective:.0f} ms and no errors:</p><ul>{items}</ul>
<img src="bench.svg" alt="submissions/s and p95 by users">
<h2>Every stage</h2><table><tr><th>target</th><th>users</th><th>requests/s</th>
<th>submissions/s</th><th>p50 ms</th><th>p95 ms</th><th>failures</th></tr>{rows}</table>
<h2>pgbench: the page-submit transaction on the primary</h2>
<table><tr><th>clients</th><th>submits/s</th><th>latency ms</th></tr>{pg}</table>
<p>Each target's own report: tuned/, naive/, trivial/.</p></body></html>"""
    (out / "index.html").write_text(page)
    return out / "index.html"


if __name__ == "__main__":
    raise SystemExit(main())
