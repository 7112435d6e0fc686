"""Writes: starting a response, saving a page of answers, completing, refreshing definitions."""

import enum

from django.db import IntegrityError, connections, router, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from psycopg.errors import ForeignKeyViolation

from routing import PRIMARY
from surveys.definitions import QuestionDef
from surveys.models import Answer, Question, Response, new_resume_token
from surveys.selectors import survey_definition_build, survey_definition_store


class Outcome(enum.Enum):
    SAVED = "saved"
    COMPLETED_ALREADY = "completed already"
    PAGE_NOT_REACHED = "page not reached"
    UNKNOWN = "unknown response"
    # The page's questions are not the survey's any more: an author changed it meanwhile.
    DEFINITION_CHANGED = "definition changed"


# One statement whether the start is new or repeated: a second POST of the same start form (a
# double click, or a retry racing the first) finds the row the first one inserted.
_START_SQL = """
INSERT INTO surveys_response (survey_id, token, start_key, reached_page, started_at, updated_at)
VALUES (%s, %s, %s, 1, %s, %s)
ON CONFLICT (survey_id, start_key) DO UPDATE SET start_key = EXCLUDED.start_key
RETURNING id, token, reached_page, started_at, updated_at, completed_at
"""


def response_start(*, survey_id, start_key=None):
    """Create a taker's Response, or return the one this start form created already (1 INSERT).

    `start_key` comes from the start form, so a double-clicked start makes one response.
    """
    if start_key is None:
        return Response.objects.create(survey_id=survey_id)
    now = timezone.now()
    alias = router.db_for_write(Response)  # also tells the routing that this request wrote
    with connections[alias].cursor() as cursor:
        cursor.execute(_START_SQL, [survey_id, new_resume_token(), start_key, now, now])
        row = cursor.fetchone()
    fields = ["id", "token", "reached_page", "started_at", "updated_at", "completed_at"]
    return Response(survey_id=survey_id, start_key=start_key, **dict(zip(fields, row, strict=True)))


def response_submit_page(*, response_id, page, cleaned, submission_id=None):
    """Save one page of answers in one transaction: lock and advance the response, upsert answers.

    Two statements on the primary whatever the page's size. The UPDATE comes first so that it
    row-locks the response and checks in the same statement that it is still open and that the
    page was reached; a replayed POST then upserts the same rows and duplicates nothing.
    A question deleted since the page's definition was read fails its foreign key at the
    commit: nothing is saved, and the outcome says the definition changed.
    """
    now = timezone.now()
    answers = [
        Answer(
            response_id=response_id,
            question_id=question.id,
            submission_id=submission_id,
            updated_at=now,
            **_answer_values(question, cleaned.get(question.field_name)),
        )
        for question in page.questions
    ]
    try:
        with transaction.atomic(using=PRIMARY):
            advanced = Response.objects.filter(
                pk=response_id, completed_at__isnull=True, reached_page__gte=page.position
            ).update(reached_page=Greatest(F("reached_page"), page.position + 1), updated_at=now)
            if not advanced:
                return _why_not_open(response_id)
            if answers:
                Answer.objects.bulk_create(
                    answers,
                    update_conflicts=True,
                    unique_fields=["response", "question"],
                    update_fields=[
                        "choice_ids",
                        "scale_value",
                        "text_value",
                        "submission_id",
                        "updated_at",
                    ],
                )
    except IntegrityError as error:
        if isinstance(error.__cause__, ForeignKeyViolation):
            return Outcome.DEFINITION_CHANGED
        raise
    return Outcome.SAVED


def response_complete(*, response_id, page_count):
    """Mark a response complete once every page has been saved (1 UPDATE)."""
    now = timezone.now()
    completed = Response.objects.filter(
        pk=response_id, completed_at__isnull=True, reached_page__gt=page_count
    ).update(completed_at=now, updated_at=now)
    return Outcome.SAVED if completed else _why_not_open(response_id)


def survey_definition_refresh(*, slug):
    """Rebuild a survey's cached definition from the primary after an author changed it."""
    definition = survey_definition_build(slug, using=PRIMARY)
    survey_definition_store(slug, definition)
    return definition


def _why_not_open(response_id):
    state = Response.objects.using(PRIMARY).filter(pk=response_id).values("completed_at").first()
    if state is None:
        return Outcome.UNKNOWN
    if state["completed_at"] is not None:
        return Outcome.COMPLETED_ALREADY
    return Outcome.PAGE_NOT_REACHED


def _answer_values(question: QuestionDef, value):
    """Map a cleaned form value to Answer columns; an empty optional answer clears the row."""
    kind = Question.Kind
    if question.kind == kind.SINGLE:
        return {"choice_ids": [] if value in (None, "") else [value]}
    if question.kind == kind.MULTIPLE:
        return {"choice_ids": sorted(value or [])}
    if question.kind == kind.SCALE:
        return {"scale_value": None if value in (None, "") else value}
    return {"text_value": value or ""}
