"""Authoring in the admin: every change reaches the cached definition, and only once committed."""

from django.db import transaction

from routing import PRIMARY
from surveys import selectors
from surveys.models import Question
from tests.helpers import admin_question_form, csrf_token, seeded_survey


def _cached_question_ids(slug="climate"):
    return {q.id for q in selectors.cached_definition(slug).questions()}


def test_a_bulk_delete_in_the_admin_refreshes_the_cached_definition(author, replication):
    definition = seeded_survey(replication)
    doomed = [q.id for q in definition.page(1).questions[:2]]
    changelist = author.get("/admin/surveys/question/")
    response = author.post(
        "/admin/surveys/question/",
        {
            "action": "delete_selected",
            "_selected_action": doomed,
            "post": "yes",
            "csrfmiddlewaretoken": csrf_token(changelist),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Question.objects.filter(pk__in=doomed).exists()
    assert not _cached_question_ids() & set(doomed)


def test_an_admin_change_reaches_the_cache_only_once_committed(author, replication):
    definition = seeded_survey(replication)
    question = Question.objects.get(pk=definition.page(1).questions[0].id)
    url, data = admin_question_form(author, question, "Rewritten, then rolled back?")
    with transaction.atomic(using=PRIMARY):
        assert author.post(url, data).status_code == 302
        transaction.set_rollback(True, using=PRIMARY)
    cached = selectors.cached_definition("climate")
    assert cached.page(1).questions[0].text == question.text

    url, data = admin_question_form(author, question, "Rewritten and committed?")
    with transaction.atomic(using=PRIMARY):
        assert author.post(url, data).status_code == 302
        cached = selectors.cached_definition("climate")
        assert cached.page(1).questions[0].text == question.text, "refreshed before the commit"
    cached = selectors.cached_definition("climate")
    assert cached.page(1).questions[0].text == "Rewritten and committed?"
