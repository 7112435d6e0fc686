"""Page saves: one statement, idempotent, and nothing written when refused."""

import uuid

from routing import PRIMARY
from surveys import services
from surveys.forms import PageForm
from surveys.models import Answer, Response
from surveys.services import Outcome
from tests.helpers import queries_by_alias, seeded_survey, valid_answers


def _cleaned(page, variant=0):
    form = PageForm(page, valid_answers(page, variant=variant))
    assert form.is_valid(), form.errors
    return form.cleaned_data


def test_a_page_save_is_one_statement_on_the_primary(replication):
    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(1)
    with queries_by_alias() as queries:
        outcome = services.response_submit_page(
            response_id=response.pk, page=page, cleaned=_cleaned(page)
        )
    assert outcome is Outcome.SAVED
    assert len(queries[PRIMARY]) == 1, queries[PRIMARY]
    assert "UPDATE surveys_response" in queries[PRIMARY][0]
    assert "ON CONFLICT" in queries[PRIMARY][0]
    saved = Answer.objects.filter(response=response)
    assert saved.count() == len(page.questions)
    # Every kind of answer arrives as the form cleaned it.
    cleaned = _cleaned(page)
    for answer in saved:
        question = next(q for q in page.questions if q.id == answer.question_id)
        value = cleaned[question.field_name]
        shown = {
            "single": answer.choice_ids[:1] and answer.choice_ids[0],
            "multiple": answer.choice_ids,
            "scale": answer.scale_value,
            "text": answer.text_value,
        }[question.kind]
        expected = sorted(value) if question.kind == "multiple" else value
        assert shown == expected, (question.kind, shown, expected)
    assert Response.objects.get(pk=response.pk).reached_page == 2


def test_replayed_page_save_does_not_duplicate_answers(replication):
    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(1)
    submission = uuid.uuid4()
    for _ in range(3):
        services.response_submit_page(
            response_id=response.pk, page=page, cleaned=_cleaned(page), submission_id=submission
        )
    answers = Answer.objects.filter(response=response)
    assert answers.count() == len(page.questions)
    assert set(answers.values_list("submission_id", flat=True)) == {submission}


def test_saving_a_page_again_updates_the_answers_in_place(replication):
    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(1)
    services.response_submit_page(response_id=response.pk, page=page, cleaned=_cleaned(page, 0))
    services.response_submit_page(response_id=response.pk, page=page, cleaned=_cleaned(page, 1))
    texts = set(
        Answer.objects.filter(response=response)
        .exclude(text_value="")
        .values_list("text_value", flat=True)
    )
    assert texts == {f"Answer 1 to {q.id}" for q in page.questions if q.kind == "text"}
    assert Answer.objects.filter(response=response).count() == len(page.questions)


def test_clearing_an_optional_answer_empties_it(replication):
    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(1)
    services.response_submit_page(response_id=response.pk, page=page, cleaned=_cleaned(page))
    optional = next(q for q in page.questions if not q.required)
    cleared = {**_cleaned(page), optional.field_name: None}
    services.response_submit_page(response_id=response.pk, page=page, cleaned=cleared)
    answer = Answer.objects.get(response=response, question_id=optional.id)
    assert (answer.choice_ids, answer.scale_value, answer.text_value) == ([], None, "")


def test_a_completed_response_refuses_pages_and_writes_nothing(replication):
    definition = seeded_survey(replication, pages=1, questions_per_page=3)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(1)
    services.response_submit_page(response_id=response.pk, page=page, cleaned=_cleaned(page, 0))
    assert services.response_complete(response_id=response.pk, page_count=1) is Outcome.SAVED
    before = list(Answer.objects.filter(response=response).values_list("updated_at", flat=True))
    outcome = services.response_submit_page(
        response_id=response.pk, page=page, cleaned=_cleaned(page, 1)
    )
    assert outcome is Outcome.COMPLETED_ALREADY
    after = list(Answer.objects.filter(response=response).values_list("updated_at", flat=True))
    assert before == after
    assert services.response_complete(response_id=response.pk, page_count=1) is (
        Outcome.COMPLETED_ALREADY
    )


def test_a_page_not_reached_is_refused(replication):
    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(3)
    outcome = services.response_submit_page(
        response_id=response.pk, page=page, cleaned=_cleaned(page)
    )
    assert outcome is Outcome.PAGE_NOT_REACHED
    assert not Answer.objects.filter(response=response).exists()
    assert services.response_complete(response_id=response.pk, page_count=5) is (
        Outcome.PAGE_NOT_REACHED
    )


def test_an_unknown_response_is_reported(replication):
    definition = seeded_survey(replication)
    outcome = services.response_submit_page(
        response_id=10**9, page=definition.page(1), cleaned=_cleaned(definition.page(1))
    )
    assert outcome is Outcome.UNKNOWN


def test_pages_advance_the_response_but_never_move_it_back(replication):
    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    for position in (1, 2, 1):
        page = definition.page(position)
        services.response_submit_page(response_id=response.pk, page=page, cleaned=_cleaned(page))
    assert Response.objects.get(pk=response.pk).reached_page == 3


def test_a_repeated_start_key_returns_the_response_it_started(replication):
    definition = seeded_survey(replication)
    key = uuid.uuid4()
    first = services.response_start(survey_id=definition.id, start_key=key)
    again = services.response_start(survey_id=definition.id, start_key=key)
    assert (again.pk, again.token) == (first.pk, first.token)
    assert Response.objects.get().token == first.token
    other = services.response_start(survey_id=definition.id, start_key=uuid.uuid4())
    assert other.pk != first.pk


def test_a_page_naming_a_deleted_question_saves_nothing(replication):
    from surveys.models import Question

    definition = seeded_survey(replication)
    response = services.response_start(survey_id=definition.id)
    page = definition.page(1)
    Question.objects.filter(pk=page.questions[-1].id).delete()
    outcome = services.response_submit_page(
        response_id=response.pk, page=page, cleaned=_cleaned(page)
    )
    assert outcome is Outcome.DEFINITION_CHANGED
    assert not Answer.objects.exists()
    assert Response.objects.get(pk=response.pk).reached_page == 1
