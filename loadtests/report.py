"""The run's report folder: index.html with plots, and summary.json with every figure."""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtests.analysis import (
    Request,
    StageResult,
    Verdict,
    percentile,
)
from loadtests.plan import SUBMISSIONS, Plan

BUCKET_S = 5  # latency percentiles over 5 s buckets
OUTSIDE = {
    "fontsize": 7,
    "loc": "upper left",
    "bbox_to_anchor": (1.01, 1.0),
}  # off the stage labels


def _per_second(requests: list[Request], t0: float):
    counts = defaultdict(lambda: [0, 0, 0])  # requests, submissions, failures
    for r in requests:
        bucket = counts[int(r.time - t0)]
        bucket[0] += 1
        bucket[1] += r.ok and r.name in SUBMISSIONS
        bucket[2] += not r.ok
    seconds = sorted(counts)
    return seconds, [counts[s] for s in seconds]


def _stage_lines(ax, stages: list[StageResult], t0: float) -> None:
    for s in stages:
        ax.axvline(s.start - t0, color="0.8", linewidth=0.8)
        ax.text(
            s.start - t0,
            1.0,
            f" {s.label}",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            va="top",
            color="0.4",
        )


def _metric(samples, metric, t0):
    """{host: ([t], [value])} of one sampled metric."""
    out: dict[str, tuple[list, list]] = {}
    for t, host, name, value in samples:
        if name == metric:
            xs, ys = out.setdefault(host, ([], []))
            xs.append(t - t0)
            ys.append(value)
    return out


def _save(fig, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / name, format="svg", bbox_inches="tight")
    plt.close(fig)
    return name


def plots(folder: Path, plan: Plan, requests, samples, stages, t0) -> list[tuple[str, str]]:
    figures = []
    seconds, buckets = _per_second(requests, t0)

    def timeline(title, ylabel, name, lines, limit, limit_label, log=False):
        fig, ax = plt.subplots(figsize=(10, 3.2))
        for label, xs, ys, color in lines:
            ax.plot(xs, ys, label=label, color=color, linewidth=0.8)
        ax.axhline(limit, color="green", linestyle="--", linewidth=0.8, label=limit_label)
        _stage_lines(ax, stages, t0)
        ax.set(xlabel="seconds", ylabel=ylabel, title=title)
        if log:
            ax.set_yscale("log")
        ax.legend(**OUTSIDE)
        figures.append((title, _save(fig, folder, name)))

    timeline(
        "Throughput and errors",
        "per second",
        "throughput.svg",
        [
            ("requests/s", seconds, [b[0] for b in buckets], None),
            ("page submissions/s", seconds, [b[1] for b in buckets], None),
            ("failures/s", seconds, [b[2] for b in buckets], "red"),
        ],
        plan.model["capacity_rps"],
        "predicted capacity (requests/s)",
    )

    by_bucket = defaultdict(list)
    for r in requests:
        by_bucket[int((r.time - t0) // BUCKET_S) * BUCKET_S].append(r.response_ms)
    xs = sorted(by_bucket)
    timeline(
        f"Response time ({BUCKET_S} s buckets)",
        "ms",
        "latency.svg",
        [(f"p{q}", xs, [percentile(by_bucket[x], q) for x in xs], None) for q in (50, 95, 99)],
        plan.model["latency_p95_ms"],
        "p95 objective",
        log=True,
    )

    panels = [
        ("Database: server connections (client backends)", "pg_connections", "connections"),
        ("Database: active connections", "pg_active", "connections"),
        ("pgbouncer: clients waiting for a server connection", "pgb_cl_waiting", "clients"),
        ("pgbouncer: server connections in use", "pgb_sv_active", "connections"),
        ("Replication: replay lag on the primary's view", "replication_lag_bytes", "bytes"),
        ("Redis: connected clients", None, "clients"),
        ("CPU by host (cores)", "cpu", "cores"),
    ]
    for title, metric, unit in panels:
        fig, ax = plt.subplots(figsize=(10, 2.8))
        if metric == "cpu":
            series = defaultdict(lambda: ([], []))
            for t, host, name, value in samples:
                if host == "cpu":
                    series[name][0].append(t - t0)
                    series[name][1].append(value)
        elif metric is None:
            series = {}
            for name in ("redis_cache_clients", "redis_sessions_clients"):
                for host, xy in _metric(samples, name, t0).items():
                    series[f"{host} {name.split('_')[1]}"] = xy
        else:
            series = _metric(samples, metric, t0)
        for host, (x, y) in sorted(series.items()):
            ax.plot(x, y, label=host, linewidth=0.8)
        _stage_lines(ax, stages, t0)
        ax.set(xlabel="seconds", ylabel=unit, title=title)
        if series:
            ax.legend(**OUTSIDE)
        figures.append((title, _save(fig, folder, f"{(metric or 'redis')}.svg")))

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    labels = [s.label for s in stages]
    positions = range(len(stages))
    left.bar(
        [p - 0.2 for p in positions], [s.offered_rps for s in stages], 0.4, label="offered (plan)"
    )
    left.bar([p + 0.2 for p in positions], [s.rps for s in stages], 0.4, label="achieved")
    right.bar(
        list(positions), [s.utilisation * 100 for s in stages], 0.5, label="worker utilisation"
    )
    for ax, limit, limit_label, ylabel, title in (
        (left, plan.model["capacity_rps"], "predicted capacity", "requests/s", "offered, achieved"),
        (right, plan.model["target_utilisation"] * 100, "target", "%", "web workers busy"),
    ):
        ax.axhline(limit, color="green", linestyle="--", linewidth=0.8, label=limit_label)
        ax.set_xticks(list(positions), labels, fontsize=7)
        ax.set(ylabel=ylabel, title=f"Per stage: {title}")
        ax.legend(fontsize=7)
    figures.append(("Per stage", _save(fig, folder, "stages.svg")))
    return figures


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return html.escape(str(value))


STAGE_COLUMNS = [
    ("label", "stage"),
    ("users", "users"),
    ("offered_rps", "offered req/s"),
    ("expected_rps", "expected req/s*"),
    ("rps", "achieved req/s"),
    ("submissions_per_s", "submissions/s"),
    ("failures", "failures"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("server_mean_ms", "in-app mean ms"),
    ("utilisation", "worker utilisation"),
    ("cpu_utilisation", "shared-core utilisation"),
    ("peak_server_connections", "peak server conns/db"),
    ("mean_active_server_connections", "mean active conns"),
    ("peak_client_waiting", "peak pgbouncer waits"),
    ("pool_wait_ms", "pgbouncer wait ms"),
    ("router_status_per_request", "router status queries/request"),
    ("generator_cpu_peak", "generator CPU peak"),
    ("fleet_cpu_cores", "fleet + generator cores"),
    ("cpu_ms_per_request", "CPU ms/request"),
]


def write(
    folder: Path,
    plan: Plan,
    requests,
    samples,
    stages: list[StageResult],
    verdict_list: list[Verdict],
    ledger: dict,
    extra: dict,
) -> Path:
    t0 = min((r.time for r in requests), default=0.0)
    figures = plots(folder, plan, requests, samples, stages, t0) if requests else []
    summary = {
        "plan": {
            "shape": plan.shape,
            "env": plan.env,
            "think_time_s": plan.think_time_s,
            "profile": plan.profile,
        },
        "stages": [asdict(s) for s in stages],
        "verdicts": [asdict(v) | {"result": v.word} for v in verdict_list],
        "ledger": ledger,
        **extra,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    rows = "".join(
        f"<tr><td>{html.escape(v.name)}</td><td>{html.escape(v.predicted)}</td>"
        f"<td>{html.escape(v.measured)}</td>"
        f"<td class='{v.word.split()[0].lower().replace('/', '')}'>{html.escape(v.word)}</td></tr>"
        for v in verdict_list
    )
    stage_rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(getattr(s, key))}</td>" for key, _ in STAGE_COLUMNS) + "</tr>"
        for s in stages
    )
    images = "".join(
        f"<h3>{html.escape(title)}</h3><img src='{name}' alt='{html.escape(title)}'>"
        for title, name in figures
    )
    calibrated = "measured" if plan.model.get("calibrated") else "placeholders (not calibrated)"
    title = f"Tally load test: {html.escape(plan.shape)}"
    header = "".join(f"<th>{html.escape(t)}</th>" for _, t in STAGE_COLUMNS)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.pass {{ background: #dfd; }} .fail {{ background: #fdd; }} .na {{ color: #888; }}
img {{ width: 100%; }}
</style></head><body>
<h1>Load test of <code>{html.escape(plan.env)}</code>: {html.escape(plan.shape)}</h1>
<p>{len(requests)} requests in {len(stages)} stage(s); think time {plan.think_time_s} s; profile
{html.escape(plan.profile)}; service times in the model: {calibrated}. Each stage's first
{plan.warmup_s:g} s are left out of its figures. Raw data: requests.csv, samples.csv,
ledger.csv, summary.json.</p>
<h2>Predictions and measurements</h2>
<table><tr><th>verdict</th><th>predicted</th><th>measured</th><th>result</th></tr>{rows}</table>
<p>"not judged": printed for information; this run's exit status does not depend on it.</p>
<h2>Stages</h2>
<table><tr>{header}</tr>{stage_rows}</table>
<p>* expected: what the users would send with the measured response time (closed model); an
achieved rate well below it means the load generator fell behind.</p>
<h2>Over time</h2>{images}
</body></html>
"""
    index = folder / "index.html"
    index.write_text(page)
    return index
