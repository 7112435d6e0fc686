"""The bad-input corpus (tests/bad_input.py) through the app: never a 5xx, never a write."""

from django.http import HttpResponseServerError

from surveys.models import Answer, Response
from tests import bad_input
from tests.helpers import csrf_token, seeded_survey, start


def target_for(definition, token, csrf):
    """The corpus's Target for a taker's first page, from the survey's definition."""
    questions = [
        bad_input.Question(page.position, q.id, q.kind, q.required, tuple(c.id for c in q.choices))
        for page in definition.pages[:2]
        for q in page.questions
    ]
    return bad_input.target_from(slug=definition.slug, token=token, csrf=csrf, questions=questions)


def send(client, case):
    """Send one case with Django's test client."""
    return client.generic(
        case.method,
        case.path,
        case.body,
        content_type=case.content_type or "",
        headers=case.headers,
    )


def test_the_corpus_gets_no_5xx_and_writes_nothing(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    token = url.split("/r/")[1].split("/")[0]
    target = target_for(definition, token, csrf_token(client.get(url)))
    attacked = Response.objects.get(token=token)
    client.raise_request_exception = False  # an exception is a 500 to count, as in production
    cases = bad_input.cases(target)
    assert len(cases) >= 200
    assert len({case.name for case in cases}) == len(cases)
    failures = []
    for case in cases:
        try:
            reply = send(client, case)
        except Exception:  # an error page that fails too: gunicorn answers 500
            reply = HttpResponseServerError()
        written = Answer.objects.filter(response=attacked).count()
        status = reply.status_code
        says = case.says if status == case.expect[0] else ""
        if status >= 500 or status not in case.expect or written or says not in reply.text:
            failures.append(f"{case.name}: {status} (expected {case.expect}), {written} written")
    assert not failures, "\n".join(failures)
    attacked.refresh_from_db()
    assert (attacked.reached_page, attacked.completed_at) == (1, None)
    # The harness can write: the valid submission it mutated is saved.
    valid = bad_input.Case("valid", "POST", target.page, bad_input.encode(bad_input.valid(target)))
    assert send(client, valid).status_code == 302
    assert Answer.objects.filter(response=attacked).count() == len(definition.page(1).questions)
