"""End to end: the bad-input corpus through nginx over HTTPS, and what the public may reach.

The cases live in app/tests/bad_input.py (the `tests` package, on pytest's pythonpath through
`app`); the app's suite sends the same cases with Django's test client, so their logic is
tested without a fleet. Here every case crosses TLS, nginx and gunicorn. No case may get a 5xx,
and none may write an answer for the attacked response, counted on the primary.
"""

import re
import time
from collections import Counter

import pytest
import requests

from tests import bad_input

pytestmark = pytest.mark.usefixtures("fleet")

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')

# Each page's questions in the survey's page order; the corpus needs the first two pages.
QUESTIONS_SQL = """
SELECT p.ordinal, q.id, q.kind, q.required,
       coalesce(string_agg(c.id::text, ',' ORDER BY c.position), '')
  FROM (SELECT id, row_number() OVER (ORDER BY position) AS ordinal
          FROM surveys_page
         WHERE survey_id = (SELECT id FROM surveys_survey WHERE slug = '{slug}')) AS p
  JOIN surveys_question AS q ON q.page_id = p.id
  LEFT JOIN surveys_choice AS c ON c.question_id = q.id
 WHERE p.ordinal <= 2
 GROUP BY p.ordinal, q.id, q.kind, q.required, q.position
 ORDER BY p.ordinal, q.position
"""
ANSWERS_SQL = """
SELECT count(a.id), min(r.reached_page), bool_or(r.completed_at IS NOT NULL)
  FROM surveys_response AS r LEFT JOIN surveys_answer AS a ON a.response_id = r.id
 WHERE r.token = '{token}'
"""
# How long a case may be refused by nginx's POST rate limit before the test gives up.
RATE_LIMIT_WAIT_S = 30


def _session(fleet):
    session = requests.Session()
    # Only the fleet's own CA: no CA bundle or proxy from the environment.
    session.trust_env = False
    session.verify = str(fleet.ca)
    return session


def _browser_headers(fleet, referer):
    """What a browser sends with a same-origin form: Django's CSRF check over HTTPS wants them."""
    return {"Origin": fleet.url, "Referer": referer}


def send(session, fleet, case, referer):
    """Send one case as is; a 429 from nginx's POST limit is waited out, not counted."""
    headers = {**_browser_headers(fleet, referer), **case.headers}
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    deadline = time.monotonic() + RATE_LIMIT_WAIT_S
    while True:
        reply = session.request(
            case.method,
            fleet.url + case.path,
            data=case.body,
            headers=headers,
            allow_redirects=False,
            timeout=60,
        )
        if reply.status_code != 429:
            return reply
        assert time.monotonic() < deadline, (
            f"{case.name}: still rate limited after {RATE_LIMIT_WAIT_S} s"
        )
        time.sleep(0.1)  # nginx's POST limit refills a request at a time


def _state(fleet, token):
    """(answers, reached_page, completed) of the attacked response, on the primary."""
    count, reached, completed = fleet.sql(
        fleet.hosts("db_primary")[0], ANSWERS_SQL.format(token=token)
    )[0]
    return int(count), int(reached), completed == "t"


@pytest.fixture(scope="module")
def attacked(fleet):
    """A taker who started the first survey on the front page and is on its first page."""
    session = _session(fleet)
    front = session.get(fleet.url + "/")
    slug = re.search(r'href="/s/([\w-]+)/"', front.text).group(1)
    intro = session.get(f"{fleet.url}/s/{slug}/")
    started = session.post(
        f"{fleet.url}/s/{slug}/",
        data=dict(_HIDDEN.findall(intro.text)),
        headers=_browser_headers(fleet, intro.url),
    )
    assert started.status_code == 200, started.text[:2000]
    assert started.url.endswith("/p/1/"), started.url
    token = re.search(rf"/s/{slug}/r/([\w-]+)/", started.url).group(1)
    questions = [
        bad_input.Question(
            int(ordinal),
            int(qid),
            kind,
            required == "t",
            tuple(int(c) for c in choices.split(",") if c),
        )
        for ordinal, qid, kind, required, choices in fleet.sql(
            fleet.hosts("db_primary")[0], QUESTIONS_SQL.format(slug=slug)
        )
    ]
    csrf = dict(_HIDDEN.findall(started.text))["csrfmiddlewaretoken"]
    target = bad_input.target_from(slug=slug, token=token, csrf=csrf, questions=questions)
    return session, target, started.url


def test_the_corpus_through_nginx_gets_no_5xx_and_writes_nothing(fleet, attacked):
    session, target, page_url = attacked
    cases = bad_input.cases(target)
    assert len(cases) >= 200
    statuses, failures = Counter(), []
    for case in cases:
        try:
            status = send(session, fleet, case, page_url).status_code
        except requests.ConnectionError:
            # nginx may close a connection while a body over its limit is still being sent.
            assert 413 in case.expect, case.name
            status = 413
        statuses[status] += 1
        written = _state(fleet, target.token)[0]
        if status >= 500 or written:
            failures.append(f"{case.name}: {status}, {written} answers written")
    print(f"\n{len(cases)} bad requests through nginx: {dict(sorted(statuses.items()))}")
    assert not failures, "\n".join(failures)
    assert _state(fleet, target.token) == (0, 1, False)
    # The same session can write: the valid submission every case corrupted is saved.
    valid = bad_input.Case("valid", "POST", target.page, bad_input.encode(bad_input.valid(target)))
    assert send(session, fleet, valid, page_url).status_code == 302
    assert _state(fleet, target.token)[0] == len(target.answers)


def test_public_readyz_says_only_that_a_web_host_answers_and_its_release(fleet):
    reply = _session(fleet).get(fleet.url + "/readyz")
    assert reply.status_code == 200
    assert reply.text.strip() == f"ok {reply.headers['X-Tally-Release']}"
    assert "replica" not in reply.text


def test_the_admin_is_open_to_every_network_by_default(fleet):
    reply = _session(fleet).get(fleet.url + "/admin/login/")
    assert reply.status_code == 200
    assert 'name="username"' in reply.text
