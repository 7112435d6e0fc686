"""python -m loadtests.profile ENV: where a web host's CPU goes under the target load, per endpoint.

The target load (the capacity model's soak) runs against ENV's fleet; once it is steady,
`make profile-record` (ansible/profile.yml) samples the first web host's gunicorn workers with
py-spy for --seconds and fetches the samples (py-spy's "raw" format: one line per distinct
stack, `frame;frame;...;frame count`, outermost first). Then the samples become tables: the
share of the workers' busy samples per endpoint, and for each endpoint, what its samples were
doing (the innermost frame that names a layer: templates, the database driver, Redis, forms,
sessions...) and the functions they were in. py-spy leaves out threads that wait (on a socket,
a lock), so the shares are of CPU, not of time. The report goes to build/ENV/profile/<time>/:
index.md, the samples (<host>.txt) and the load test's own folder. `make profile` runs it.

Endpoints are told apart by the view function on the stack, and a page's GET from its POST by
what only a POST runs (validating and saving the page). What runs outside the view (middleware
before and after it, the session's save, gunicorn's own work) is counted as its own row.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from loadtests import runner
from loadtests.__main__ import arguments, build_plan
from loadtests.fleet import ROOT, Fleet, report_folder

# A frame as py-spy writes it: `function (path/to/file.py:line)`; without a line for native
# frames and when it cannot tell.
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")
# The app's view modules: the first of their functions on a stack names the endpoint.
VIEW_FILES = ("surveys/views.py", "tally/health.py", "surveys/admin.py", "surveys/export.py")
# What only a page POST runs beneath survey_page.
POST_ONLY = {"response_submit_page", "full_clean", "reject_unknown_ids"}
# Layers, innermost first wins: the file path fragment that marks each one.
LAYERS = (
    ("templates", ("django/template/", "django/templatetags/")),
    ("forms and rendering", ("django/forms/", "surveys/forms.py", "surveys/rendering.py")),
    ("database driver", ("psycopg/", "psycopg_binary/")),
    ("ORM", ("django/db/",)),
    ("Redis", ("redis/", "django_redis/")),
    ("sessions", ("django/contrib/sessions/", "django/core/signing.py")),
    ("read router", ("routing/router.py", "routing/replicas.py", "routing/lsn.py", "routing/mid")),
    ("URLs", ("django/urls/",)),
    ("middleware", ("django/middleware/", "tally/middleware.py", "tally/release.py")),
    ("Django's handler", ("django/core/handlers/", "django/http/")),
    ("gunicorn", ("gunicorn/",)),
    # The app's own code (views, selectors, services...) and what it calls in the standard
    # library: after the libraries above, which a stack reaches through it.
    ("the app", ("surveys/", "tally/")),
)


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) of each frame of a raw stack, outermost first."""
    found = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        if match:
            found.append((match["function"], match["file"]))
    return found


def endpoint(stack: list[tuple[str, str]]) -> str:
    for function, file in stack:
        if file.endswith(VIEW_FILES):
            if function == "survey_page":
                posting = any(inner in POST_ONLY for inner, _ in stack)
                return "survey_page POST" if posting else "survey_page GET"
            return function
    return "(outside a view)"


def layer(stack: list[tuple[str, str]]) -> str:
    for _, file in reversed(stack):
        for name, marks in LAYERS:
            if any(mark in file for mark in marks):
                return name
    return "other (the standard library, outside the app)"


def parse(text: str) -> Counter:
    """{stack: samples} from py-spy's raw output."""
    counts: Counter = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stack] += int(count)
    return counts


def summarise(counts: Counter) -> dict:
    """Samples per endpoint, per endpoint and layer, and per endpoint and innermost function."""
    per_endpoint: Counter = Counter()
    layers: dict[str, Counter] = defaultdict(Counter)
    functions: dict[str, Counter] = defaultdict(Counter)
    for raw, samples in counts.items():
        stack = frames(raw)
        if not stack:
            continue
        name = endpoint(stack)
        per_endpoint[name] += samples
        layers[name][layer(stack)] += samples
        inner_function, inner_file = stack[-1]
        functions[name][f"{inner_function} ({inner_file.split('site-packages/')[-1]})"] += samples
    return {"endpoints": per_endpoint, "layers": layers, "functions": functions}


def page(summary: dict, meta: dict) -> str:
    total = sum(summary["endpoints"].values()) or 1
    lines = [
        "# Where the web tier's CPU goes",
        "",
        f"{meta['host']}, {meta['seconds']} s at {meta['rate']} samples/s per process under the"
        f" target load ({meta['shape']}); {total:,} busy samples.",
        "",
        "| endpoint | share of busy samples |",
        "| --- | --- |",
    ]
    for name, samples in summary["endpoints"].most_common():
        lines.append(f"| {name} | {samples / total:.1%} |")
    for name, samples in summary["endpoints"].most_common():
        lines += ["", f"## {name}", "", "| layer | share of the endpoint |", "| --- | --- |"]
        for what, count in summary["layers"][name].most_common():
            lines.append(f"| {what} | {count / samples:.1%} |")
        lines += ["", "| innermost function | share of the endpoint |", "| --- | --- |"]
        for what, count in summary["functions"][name].most_common(12):
            lines.append(f"| `{what}` | {count / samples:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.profile", description=__doc__)
    p.add_argument("env")
    p.add_argument("--seconds", type=int, default=30, help="how long to sample (default 30)")
    p.add_argument("--rate", type=int, default=100, help="samples/s per process (default 100)")
    p.add_argument("--warmup", type=float, default=15, help="load before sampling (default 15)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    fleet = Fleet.of(args.env)
    host = fleet.hosts("web")[0]
    out = report_folder(args.env, "profile", args.out)
    seconds = args.warmup + args.seconds + 10  # the load outlasts the sampling
    the_plan = build_plan(
        arguments([args.env, "--shape", "soak", "--seconds", str(seconds)]), fleet
    )
    load_failed: list[BaseException] = []

    def load():
        try:
            runner.execute(fleet, the_plan, out / "load")
        except BaseException as error:  # SystemExit too: reported below, after the sampling
            load_failed.append(error)

    def record(step: str, **settings) -> subprocess.CompletedProcess:
        """`make profile-record` of one step (ansible/profile.yml's tag), logged into `out`."""
        variables = {"tags": step, "host": host, "out": out.resolve(), **settings}
        done = subprocess.run(
            ["make", "--no-print-directory", "profile-record", f"ENV={args.env}"]
            + [f"PROFILE_{key.upper()}={value}" for key, value in variables.items()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        (out / f"profile-{step}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            p.exit(1, f"make profile-record ({step}) failed; its log: {out}/profile-{step}.log\n")
        return done

    record("install")  # before the load, so that sampling starts when the load is steady
    thread = threading.Thread(target=load, name="load")
    thread.start()
    time.sleep(runner.IDLE_S + args.warmup)
    record("sample", seconds=args.seconds, rate=args.rate)
    thread.join()
    if load_failed:
        p.exit(1, f"the load test failed: {load_failed[0]!r}\n")
    summary = summarise(parse((out / f"{host}.txt").read_text()))
    meta = {"host": host, "seconds": args.seconds, "rate": args.rate, "shape": "soak"}
    (out / "index.md").write_text(page(summary, meta))
    print(f"profile: {out / 'index.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
