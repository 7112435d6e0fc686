"""Time and memory of the CSV export (surveys/export.py) of a survey with many answers.

Not a test (pytest collects test_*.py only): a measurement to run by hand, on a quiet machine,
from the repository root:

    TALLY_TEST_REPLICAS=1 .venv/bin/python app/tests/bench_export.py [--responses 100000]

It starts the servers the test suite runs on (tests/conftest.py), seeds the demo survey (ten
questions a page, five pages) with that many responses (every one completed: ten answers a
page), waits for the replica, then exports it from the replica as the admin's view does and
prints the rows, answers, seconds, rows per second, and this process's peak resident memory
before and after the export (ru_maxrss: the export must not raise it by more than a chunk's
worth, whatever the survey's size).
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # app/, as pytest sets it
os.environ.setdefault("TALLY_TEST_REPLICAS", "1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=100_000)
    args = parser.parse_args()
    from tests import conftest

    try:
        conftest.pytest_configure(None)  # in the try: if it fails half way, stop what it started
        measure(conftest, args.responses)
    finally:
        conftest.pytest_unconfigure(None)


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(conftest, responses):
    from django.conf import settings

    from routing import PRIMARY
    from surveys import demo, export, selectors
    from surveys.models import Answer

    survey = demo.create_survey(slug="climate", title="School climate")
    started = time.monotonic()
    demo.create_responses(survey, responses, completed_share=1)
    print(f"seeded {responses} responses in {time.monotonic() - started:.0f} s")
    conftest._RUN.replication.wait_for_replay()
    using = (settings.TALLY_REPLICA_ALIASES or [PRIMARY])[0]
    answers = Answer.objects.using(using).count()
    definition = selectors.survey_definition_build("climate", using=using)
    before = _peak_mb()
    started = time.monotonic()
    rows = sizes = 0
    for line in export.csv_lines(definition, using):
        rows += 1
        sizes += len(line)
    seconds = time.monotonic() - started
    print(
        f"exported {rows - 1} responses ({answers} answers, {sizes / 1e6:.1f} MB of CSV) from "
        f"{using} in {seconds:.1f} s: {(rows - 1) / seconds:.0f} responses/s, "
        f"{answers / seconds:.0f} answers/s; peak RSS {before:.0f} MB before, "
        f"{_peak_mb():.0f} MB after"
    )


if __name__ == "__main__":
    main()
