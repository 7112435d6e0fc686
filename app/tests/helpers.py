"""Helpers shared by the tests: query capture per database alias, forms, survey fixtures."""

import re
from contextlib import ExitStack, contextmanager

from django.conf import settings
from django.db import connections

from routing.replicas import STATUS_TAG
from surveys import demo, selectors
from surveys.models import Question

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@contextmanager
def queries_by_alias():
    """Capture the SQL each database alias runs inside the block: {alias: [sql, ...]}."""
    captured = {conn.alias: [] for conn in connections.all()}

    def recorder(alias):
        def record(execute, sql, params, many, context):
            captured[alias].append(sql)
            return execute(sql, params, many, context)

        return record

    with ExitStack() as stack:
        for conn in connections.all():
            stack.enter_context(conn.execute_wrapper(recorder(conn.alias)))
        yield captured


def replica_aliases():
    """The replicas' database aliases in this run (none with TALLY_TEST_REPLICAS=0)."""
    return list(settings.TALLY_REPLICA_ALIASES)


def replica_reads(queries):
    """How many statements of a queries_by_alias capture read data on any replica.

    The router's own status probe is not a read: it runs on each replica whenever the status TTL
    runs out, which may fall inside any capture, even while the replica is being skipped.
    """
    return sum(STATUS_TAG not in sql for alias in replica_aliases() for sql in queries[alias])


def csrf_token(response):
    match = _CSRF.search(response.content.decode())
    assert match, "the page has no CSRF token"
    return match.group(1)


def seeded_survey(replication, *, slug="climate", pages=5, questions_per_page=10):
    """Create a demo survey on the primary, wait for the replicas, return its definition."""
    demo.create_survey(
        slug=slug, title="School climate", pages=pages, questions_per_page=questions_per_page
    )
    replication.wait_for_replay()
    return selectors.survey_definition(slug)


def valid_answers(page, *, variant=0):
    """POST data that answers every question on a page validly; `variant` changes the values."""
    data = {}
    for question in page.questions:
        if question.kind == Question.Kind.TEXT:
            data[question.field_name] = f"Answer {variant} to {question.id}"
        elif question.kind == Question.Kind.SCALE:
            data[question.field_name] = str(1 + variant % 5)
        elif question.kind == Question.Kind.SINGLE:
            data[question.field_name] = str(question.choices[variant % len(question.choices)].id)
        else:
            choices = question.choices
            data[question.field_name] = [
                str(choices[variant % len(choices)].id),
                str(choices[-1].id),
            ]
    return data


def start(client, slug="climate"):
    """Start a survey as a taker; returns the URL of page 1."""
    intro = client.get(f"/s/{slug}/")
    assert intro.status_code == 200
    response = client.post(f"/s/{slug}/", {"csrfmiddlewaretoken": csrf_token(intro)})
    assert response.status_code == 302, response.content
    return response["Location"]


def post_page(client, url, data):
    """GET a page for its CSRF token, then POST `data` to it; returns the POST's response."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    return client.post(url, {**data, "csrfmiddlewaretoken": csrf_token(page)})


def admin_question_form(author, question, text):
    """The admin's change form of `question` with its text replaced: (url, POST data)."""
    url = f"/admin/surveys/question/{question.pk}/change/"
    data = {
        "page": question.page_id,
        "position": question.position,
        "kind": question.kind,
        "text": text,
        "help_text": "",
        "required": "on",
        "scale_low_label": "",
        "scale_high_label": "",
        "choices-TOTAL_FORMS": "0",
        "choices-INITIAL_FORMS": "0",
        "choices-MIN_NUM_FORMS": "0",
        "choices-MAX_NUM_FORMS": "1000",
        "csrfmiddlewaretoken": csrf_token(author.get(url)),
    }
    return url, data
