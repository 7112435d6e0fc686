"""CPU per request of the hot views, before and after a change, side by side in one run.

Not a test (pytest collects test_*.py only): a measurement to run by hand, from the
repository root, on a machine doing nothing else:

    .venv/bin/python app/tests/bench_views.py --before REF [--rounds 3] [--requests 300]

REF (a commit, a tag) is checked out into build/bench-before/ with `git worktree`; then, round
after round, a child process per side (the order alternating, so neither always runs on a
warmer machine) starts the servers the test suite runs on (that side's tests/conftest.py:
PostgreSQL with a replica, pgbouncer, Redis, the S3 store), seeds the demo survey (five pages
of ten questions) and times each view through Django's test client: the CPU time of its own
process per request (time.process_time, so waiting on the servers does not count). The two
sides share this machine, its Python and the venv's packages; only the app differs.

| view | what is timed |
| --- | --- |
| page GET, prefilled | page 1 of a response whose page 1 is saved |
| page GET, blank | page 2 of that response |
| page POST | page 1 sent again (valid; the same rows updated) |
| results, warm | the results page, its counts cached |

It prints, for each view and side, the mean and the 99th percentile over every round, and
after/before.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ("page GET, prefilled", "page GET, blank", "page POST", "results, warm")


def child(app, requests):
    """Measure `app` (an app/ folder) in this process; print {view: [ms, ...]} as JSON."""
    sys.path.insert(0, str(app))
    os.environ.setdefault("TALLY_TEST_REPLICAS", "1")
    from tests import conftest

    try:
        conftest.pytest_configure(None)
        from django.test.utils import teardown_test_environment

        teardown_test_environment()  # templates render as in production, not instrumented
        print(json.dumps(measure(conftest, requests)))
    finally:
        conftest.pytest_unconfigure(None)


def measure(conftest, requests):
    from surveys import demo, selectors
    from tests.helpers import csrf_token, post_page, start, valid_answers

    demo.create_survey(slug="climate", title="School climate")
    conftest._RUN.replication.wait_for_replay()
    definition = selectors.survey_definition("climate")
    client = conftest.https_client()
    first = start(client)
    answers = valid_answers(definition.page(1))
    assert post_page(client, first, answers).status_code == 302
    conftest._RUN.replication.wait_for_replay()
    second = first.replace("/p/1/", "/p/2/")

    def get(url):
        def run():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        return run

    def post():
        token = csrf_token(client.get(first))  # not timed: the POST's own cost is
        data = {**answers, "csrfmiddlewaretoken": token}

        def run():
            response = client.post(first, data)
            assert response.status_code == 302, response.status_code

        return run

    runs = {
        "page GET, prefilled": get(first),
        "page GET, blank": get(second),
        "results, warm": get("/s/climate/results/"),
    }
    times = {view: [] for view in VIEWS}
    for view, run in runs.items():
        for _ in range(20):  # templates compiled, caches warm, connections open
            run()
        for _ in range(requests):
            started = time.process_time()
            run()
            times[view].append((time.process_time() - started) * 1000)
    send = post()
    for _ in range(20):
        send()
    for _ in range(requests):
        started = time.process_time()
        send()
        times["page POST"].append((time.process_time() - started) * 1000)
    return times


def p99(values):
    return statistics.quantiles(values, n=100)[98]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the commit to compare with (checked out beside)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per view")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.requests)
    if not args.before:
        parser.error("name the commit to compare with: --before REF")
    before_tree = ROOT / "build" / "bench-before"
    subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT)
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(before_tree), args.before], cwd=ROOT, check=True
    )
    sides = {"before": before_tree / "app", "after": ROOT / "app"}
    times = {side: {view: [] for view in VIEWS} for side in sides}
    try:
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                result = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(sides[side]),
                        "--requests",
                        str(args.requests),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                measured = json.loads(result.stdout.strip().splitlines()[-1])
                for view in VIEWS:
                    times[side][view].extend(measured[view])
                print(f"round {round_ + 1}: {side} measured", file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT)
    n = args.rounds * args.requests
    print(f"CPU ms per request, {n} requests per view and side ({args.rounds} rounds)")
    print("| view | before: mean, p99 | after: mean, p99 | after/before (mean) |")
    print("| --- | --- | --- | --- |")
    for view in VIEWS:
        old, new = times["before"][view], times["after"][view]
        ratio = statistics.fmean(new) / statistics.fmean(old)
        print(
            f"| {view} | {statistics.fmean(old):.2f}, {p99(old):.2f} "
            f"| {statistics.fmean(new):.2f}, {p99(new):.2f} | {ratio:.3f} (1/{1 / ratio:.1f}) |"
        )


if __name__ == "__main__":
    main()
