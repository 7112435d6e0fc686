"""Locust scenarios of a survey day: takers and results viewers (run by `python -m loadtests`).

Every request is checked for what a browser would see (status, redirect target, the form or
text the page must have); a response that fails its check is a failure in the statistics, and
the taker gives up that survey. Each page submission carries a fresh submission_id, and every
one the site acknowledged (its redirect to the next page) goes into the ledger, which the run
reconciles with the database afterwards. Straight after each acknowledged page, the taker reads
that page again, as the browser's Back button would, and compares the answers it shows with the
ones it posted: a difference is a stale read of the client's own write (rereads.csv).

The plan (stages, think time, CA) comes from the JSON file named by TALLY_LOAD_PLAN; results go
to the directory TALLY_LOAD_OUT. In distributed mode the workers send their records to the
master with Locust's own reports, so the master's files hold the whole run.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import ssl
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import gevent
from locust import FastHttpUser, LoadTestShape, between, constant, events, task
from locust.exception import RescheduleTask
from locust.runners import WorkerRunner

from loadtests.forms import SURVEY_LINK, Form
from loadtests.plan import Plan

PLAN = Plan.load(Path(os.environ["TALLY_LOAD_PLAN"]))
OUT = Path(os.environ.get("TALLY_LOAD_OUT", "."))
THINK = PLAN.think_time_s
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
# The release that served a response (app/tally/release.py).
RELEASE_HEADER = "X-Tally-Release"

# This process's records, drained to the master in distributed mode.
# (time, name, response_ms, server_ms, ok, HTTP status or 0 without a response, release,
#  Retry-After)
records: list[tuple] = []
ledger: list[tuple] = []  # (kind, id, slug, token, page, time it was acknowledged)
rereads: list[tuple] = []  # (time, token, page, questions shown stale, separated by spaces)
stage_starts: list[tuple] = []  # (time, label, users)


def _ssl_context(**_ignored):
    """Verify the site against the fleet's own CA only."""
    context = (
        ssl.create_default_context(cafile=PLAN.ca) if PLAN.ca else ssl.create_default_context()
    )
    return context


def _headers(response) -> dict:
    """A response's headers; none when there was no response (a connection error)."""
    return getattr(response, "headers", None) or {}


def _server_ms(response) -> float | None:
    header = _headers(response).get("Server-Timing")
    if not header or ";dur=" not in header:
        return None
    try:
        return float(header.split(";dur=", 1)[1].split(",", 1)[0])
    except ValueError:
        return None


@events.request.add_listener
def _record(request_type, name, response_time, response, exception, **_kwargs):
    status = getattr(response, "status_code", 0) or 0
    headers = _headers(response)
    records.append(
        (
            time.time(),
            name,
            round(response_time, 2),
            _server_ms(response),
            exception is None,
            status,
            headers.get(RELEASE_HEADER, ""),
            headers.get("Retry-After", ""),
        )
    )


@events.report_to_master.add_listener
def _send(client_id, data):
    data["tally"] = {"records": records[:], "ledger": ledger[:], "rereads": rereads[:]}
    records.clear()
    ledger.clear()
    rereads.clear()


@events.worker_report.add_listener
def _receive(client_id, data):
    tally = data.get("tally") or {}
    records.extend(tuple(row) for row in tally.get("records", []))
    ledger.extend(tuple(row) for row in tally.get("ledger", []))
    rereads.extend(tuple(row) for row in tally.get("rereads", []))


@events.quitting.add_listener
def _write(environment, **_kwargs):
    if isinstance(environment.runner, WorkerRunner):
        return
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "requests.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["time", "name", "response_ms", "server_ms", "ok", "status", "release", "retry_after"]
        )
        writer.writerows(sorted(records))
    with (OUT / "ledger.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "id", "slug", "token", "page", "time"])
        writer.writerows(ledger)
    with (OUT / "rereads.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "token", "page", "stale"])
        writer.writerows(rereads)
    (OUT / "stages.json").write_text(
        json.dumps(
            [{"time": t, "label": label, "users": users} for t, label, users in stage_starts]
        )
    )


class _Site(FastHttpUser):
    abstract = True
    insecure = False
    ssl_context_factory = staticmethod(_ssl_context)

    def on_start(self):
        self.rng = random.Random()
        with self.client.get("/", name="list GET", catch_response=True) as response:
            self.slugs = SURVEY_LINK.findall(response.text or "")
            if response.status_code != 200 or not self.slugs:
                response.failure(f"front page: {response.status_code}, no open survey listed")
                raise RescheduleTask()

    def expect(self, response, status, *, location=None, text=None, form=False):
        """Check a response as a browser would see it; returns its form when asked for one."""
        problem = None
        if response.status_code != status:
            problem = f"status {response.status_code}, expected {status}"
        elif location and not re.search(location, response.headers.get("Location", "")):
            problem = f"redirected to {response.headers.get('Location')!r}, not {location}"
        elif text and text not in (response.text or ""):
            problem = f"{text!r} missing"
        parsed = Form(response.text or "") if form and not problem else None
        if parsed is not None and "csrfmiddlewaretoken" not in parsed.hidden:
            problem = "no form with a CSRF token"
        if problem:
            response.failure(problem)
            raise RescheduleTask()
        response.success()
        return parsed

    def think(self):
        """A pause with mean THINK (uniform), so the plan's closed-model arithmetic holds."""
        gevent.sleep(self.rng.uniform(0.5 * THINK, 1.5 * THINK))

    def view_results(self, slug):
        with self.client.get(f"/s/{slug}/results/", name="results GET", catch_response=True) as r:
            self.expect(r, 200, text="Results: ")

    def post(self, url, values, *, name, referer):
        return self.client.post(
            url,
            data=urlencode(values, doseq=True),
            name=name,
            headers={**FORM_HEADERS, "Referer": self.host + referer, "Origin": self.host},
            allow_redirects=False,
            catch_response=True,
        )


class SurveyTaker(_Site):
    """Takes a survey from the landing page to its end, thinking on each page (the review page
    included) and nowhere else: as in the capacity model, a finished taker is replaced at once."""

    weight = 9
    wait_time = constant(0)

    @task
    def take_survey(self):
        slug = self.rng.choice(self.slugs)
        landing = f"/s/{slug}/"
        with self.client.get(landing, name="landing GET", catch_response=True) as response:
            form = self.expect(response, 200, form=True)
        with self.post(landing, form.hidden, name="start POST", referer=landing) as response:
            self.expect(response, 302, location=rf"^/s/{slug}/r/[\w-]+/p/1/$")
            url = response.headers["Location"]
        token = url.split("/r/")[1].split("/")[0]
        position = 1
        while True:
            review = url.endswith("/review/")
            kind = "review" if review else "page"
            with self.client.get(url, name=f"{kind} GET", catch_response=True) as response:
                form = self.expect(response, 200, form=True)
            self.think()
            values = form.hidden if review else form.answers(self.rng)
            submission = str(uuid.uuid4())
            if not review:
                values["submission_id"] = submission
            following = r"/done/$" if review else rf"/(p/{position + 1}|review)/$"
            with self.post(url, values, name=f"{kind} POST", referer=url) as response:
                self.expect(response, 302, location=following)
                next_url = response.headers["Location"]
            if review:
                ledger.append(("done", token, slug, token, 0, time.time()))
                break
            ledger.append(("page", submission, slug, token, position, time.time()))
            self.reread(url, values, token, position)
            url, position = next_url, position + 1
        with self.client.get(next_url, name="done GET", catch_response=True) as response:
            self.expect(response, 200, text="Thank you")
        if self.rng.random() < PLAN.results_view_share:
            self.view_results(slug)

    def reread(self, url, posted, token, position):
        """Read the page just saved and note any answer it shows that differs from the post."""
        with self.client.get(url, name="page reread GET", catch_response=True) as response:
            form = self.expect(response, 200, form=True)
        rereads.append((time.time(), token, position, " ".join(form.stale(posted))))


class ResultsViewer(_Site):
    """Reads results pages, as the survey's organisers do all day (read-heavy)."""

    weight = 1
    wait_time = between(0.5 * THINK, 1.5 * THINK)

    @task
    def browse(self):
        self.view_results(self.rng.choice(self.slugs))


class TrivialView(FastHttpUser):
    """The framework's ceiling (make bench): the app's liveness view through nginx, TLS and
    gunicorn, with Django's middleware but no database, cache or session work."""

    insecure = False
    ssl_context_factory = staticmethod(_ssl_context)
    wait_time = constant(THINK)

    @task
    def live(self):
        with self.client.get("/healthz", name="trivial GET", catch_response=True) as response:
            if response.status_code != 200 or not (response.text or "").startswith("ok "):
                response.failure(f"status {response.status_code}, expected 200 ok <release>")


# A run in the background (runner.background) ends when this file appears.
STOP = OUT / "stop"


class PlannedShape(LoadTestShape):
    """The plan's stages, one after another; the run ends after the last, or when STOP exists."""

    def tick(self):
        if STOP.exists():
            return None
        elapsed, total = self.get_run_time(), 0.0
        for stage in PLAN.stages:
            total += stage.seconds
            if elapsed < total:
                if not stage_starts or stage_starts[-1][1] != stage.label:
                    stage_starts.append((time.time(), stage.label, stage.users))
                return stage.users, stage.spawn_rate
        return None
