"""Writes: starting a response, saving a page of answers, completing, refreshing definitions."""

import enum

from django.db import IntegrityError, connections, router
from django.utils import timezone
from psycopg.errors import ForeignKeyViolation
from psycopg.types.json import Jsonb

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


# A page's save as one statement: advance the response (row-locking it, and checking that it is
# still open and that the page was reached), then upsert the page's answers, only if it advanced.
# In autocommit that is its own transaction: one round trip where a transaction of two
# statements took four (BEGIN went with the first; the COMMIT was one more), and no queryset
# or model instance per answer to build (a third of a page POST's CPU, `make profile` found).
# The answers come as one JSON array, each {question_id, choice_ids, scale_value, text_value}.
_SUBMIT_PAGE_SQL = """
WITH advanced AS (
    UPDATE surveys_response
       SET reached_page = GREATEST(reached_page, %(next_page)s), updated_at = %(now)s
     WHERE id = %(response_id)s AND completed_at IS NULL AND reached_page >= %(page)s
 RETURNING id
), saved AS (
    INSERT INTO surveys_answer
           (response_id, question_id, choice_ids, scale_value, text_value, submission_id,
            updated_at)
    SELECT advanced.id, a.question_id, a.choice_ids, a.scale_value, a.text_value,
           %(submission_id)s, %(now)s
      FROM advanced
     CROSS JOIN jsonb_to_recordset(%(answers)s)
           AS a(question_id bigint, choice_ids bigint[], scale_value smallint, text_value text)
        ON CONFLICT (response_id, question_id) DO UPDATE
       SET choice_ids = EXCLUDED.choice_ids, scale_value = EXCLUDED.scale_value,
           text_value = EXCLUDED.text_value, submission_id = EXCLUDED.submission_id,
           updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM advanced)
"""


def response_submit_page(*, response_id, page, cleaned, submission_id=None):
    """Save one page of answers: advance the response and upsert the answers (1 statement).

    The response is advanced first, so that it is row-locked and checked to be open, with the
    page reached, before any answer is written; a replayed POST then upserts the same rows and
    duplicates nothing. A question deleted since the page's definition was read fails its
    foreign key at the commit: nothing is saved, and the outcome says the definition changed.
    """
    now = timezone.now()
    answers = [
        {
            "question_id": question.id,
            **_ANSWER_BLANK,
            **_answer_values(question, cleaned.get(question.field_name)),
        }
        for question in page.questions
    ]
    parameters = {
        "response_id": response_id,
        "page": page.position,
        "next_page": page.position + 1,
        "now": now,
        "submission_id": submission_id,
        "answers": Jsonb(answers),
    }
    alias = router.db_for_write(Answer)  # also tells the routing that this request wrote
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(_SUBMIT_PAGE_SQL, parameters)
            (advanced,) = cursor.fetchone()
    except IntegrityError as error:
        if isinstance(error.__cause__, ForeignKeyViolation):
            return Outcome.DEFINITION_CHANGED
        raise
    return Outcome.SAVED if advanced else _why_not_open(response_id)


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


# An answer's columns as a new row has them: what _answer_values() does not set.
_ANSWER_BLANK = {"choice_ids": [], "scale_value": None, "text_value": ""}


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
