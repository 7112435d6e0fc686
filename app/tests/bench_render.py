"""CPU cost of a survey page GET: Django's widget templates against surveys/rendering.py.

Not a test (pytest collects test_*.py only): a measurement to run by hand, on a quiet machine,
from the repository root:

    TALLY_TEST_REPLICAS=1 .venv/bin/python app/tests/bench_render.py [--requests 200]

It starts the servers the test suite runs on (tests/conftest.py: PostgreSQL, pgbouncer, Redis,
the S3 store), seeds the demo survey (surveys/demo.py: five pages of ten questions), has a taker
save page 1, then GETs page 1 (prefilled with those answers) and page 2 (blank) through Django's
test client, with page.html as it was (each question rendered by `{{ field }}`, as
tests/test_rendering.py keeps it) and as it is, in alternating blocks in the same process.
For each it prints the mean and median CPU time of a GET (time.process_time: this process's
CPU, so waiting on the servers does not count) and the Python function calls one GET makes
(sys.setprofile). Template rendering runs as in production: the suite's instrumentation of
Template._render (for response.templates) is taken off first.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app/, as pytest sets it
os.environ.setdefault("TALLY_TEST_REPLICAS", "1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="GETs per page and way")
    parser.add_argument("--blocks", type=int, default=10, help="alternations of the two ways")
    args = parser.parse_args()
    from tests import conftest

    try:
        conftest.pytest_configure(None)  # in the try: if it fails half way, stop what it started
        from django.test.utils import teardown_test_environment

        teardown_test_environment()
        measure(conftest, args.requests, args.blocks)
    finally:
        conftest.pytest_unconfigure(None)


def measure(conftest, requests, blocks):
    from surveys import demo, selectors
    from tests.helpers import post_page, start, valid_answers
    from tests.test_rendering import calls_in, django_widgets_page, page_template

    demo.create_survey(slug="climate", title="School climate")
    conftest._RUN.replication.wait_for_replay()
    definition = selectors.survey_definition("climate")
    client = conftest.https_client()
    first = start(client)
    assert post_page(client, first, valid_answers(definition.page(1))).status_code == 302
    pages = {"page 1, prefilled": first, "page 2, blank": first.replace("/p/1/", "/p/2/")}
    ways = {"old: {{ field }}": django_widgets_page(), "new: rendering.py": None}
    seconds = {(way, page): [] for way in ways for page in pages}
    calls = {}

    def get(url):
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response

    per_block = max(1, requests // blocks)
    for block in range(blocks):
        # Alternate which way goes first, so neither always runs on a warmer or cooler CPU.
        order = list(ways) if block % 2 == 0 else list(reversed(ways))
        for way in order:
            with page_template(ways[way]):
                for url in pages.values():
                    get(url)  # the template engine was reset: load and compile the templates
                for page, url in pages.items():
                    calls[way, page] = min(calls_in(get, url) for _ in range(3))
                for _ in range(per_block):
                    for page, url in pages.items():
                        started = time.process_time()
                        get(url)
                        seconds[way, page].append(time.process_time() - started)

    old, new = ways
    print(f"CPU time per page GET ({per_block * blocks} GETs of each page each way)")
    for page in pages:
        for way in ways:
            times = seconds[way, page]
            print(
                f"  {page:18} {way:17} mean {statistics.mean(times) * 1000:7.3f} ms"
                f"  median {statistics.median(times) * 1000:7.3f} ms"
                f"  {calls[way, page]:6} Python calls"
            )
        ratio = statistics.mean(seconds[new, page]) / statistics.mean(seconds[old, page])
        print(
            f"  {page:18} new/old: {ratio:.3f} of the CPU time (1/{1 / ratio:.1f}),"
            f" {calls[new, page] / calls[old, page]:.3f} of the calls"
        )


if __name__ == "__main__":
    main()
