"""Reads: survey definitions (cache, then primary), a taker's answers, and survey results."""

import time
from collections import namedtuple

from django.conf import settings
from django.core.cache import cache
from django.db import connections, router
from django.db.models import Avg, Count, Prefetch, Q
from django_redis.client import DefaultClient
from redis.exceptions import RedisError

from routing import PRIMARY
from surveys import memo
from surveys.definitions import ChoiceDef, PageDef, QuestionDef, SurveyDef
from surveys.models import Answer, Choice, Page, Question, Response, Survey

_DEFINITION_KEY = "survey-definition:v1:{slug}"
_RESULTS_KEY = "survey-results:v2:{survey_id}"
_OPEN_SURVEYS_KEY = "open-surveys:v1"
# Cached in place of a definition for a slug that does not exist, so that requests for unknown
# surveys do not reach the database every time.
_MISSING = "missing"
# This process's copy of each definition it served: {slug: (the cache's bytes, SurveyDef)}.
# Every page view of a survey reads the same definition; unpickling it again each time was a
# tenth of a page GET's CPU (app/README.md).
_UNPICKLED = memo.Recent(256)


def definition_cache_key(slug):
    return _DEFINITION_KEY.format(slug=slug)


def survey_definition(slug):
    """Return the SurveyDef for `slug` from the cache, building it on a miss; None if unknown.

    A miss is rebuilt from the primary: a replica may not have replayed the author's last change
    yet, and what is cached stays for an hour. Misses are rare (an author's change refreshes the
    entry), so the four reads cost the primary little. `add`, not `set`: a refresh that ran
    while this miss was being built has the newer definition and is not overwritten.
    """
    key = definition_cache_key(slug)
    found, cached = _cached_definition(slug, key)
    if not found:
        cached = survey_definition_build(slug, using=PRIMARY) or _MISSING
        cache.add(key, cached, settings.TALLY_DEFINITION_CACHE_SECONDS)
    return None if cached == _MISSING else cached


def _cached_definition(slug, key):
    """(found, what the cache holds for `key`), as cache.get() would give it, except that with
    django-redis the value's bytes are read and unpickled only when they differ from what this
    process unpickled last for `slug`: the same objects then serve every request until the
    survey changes, and what is made from a page once (forms.page_inputs_html) can be kept.

    The cache is best effort here as everywhere (IGNORE_EXCEPTIONS): a Redis error is a miss.
    """
    client = getattr(cache, "client", None)
    if not isinstance(client, DefaultClient):  # the naive bench's DummyCache, for one
        value = cache.get(key)
        return value is not None, value
    try:
        pickled = client.get_client(write=False).get(client.make_key(key))
    except (RedisError, OSError):
        return False, None
    if pickled is None:
        return False, None
    last = _UNPICKLED.get(slug)
    if last is not None and last[0] == pickled:
        return True, last[1]
    value = client.decode(pickled)
    if value != _MISSING:  # unknown slugs are not kept: they would push out the real ones
        _UNPICKLED.put(slug, (pickled, value))
    return True, value


def survey_definition_store(slug, definition):
    """Put `definition` (None: the survey is gone) in the cache in place of what it holds."""
    key = definition_cache_key(slug)
    if definition is None:
        cache.delete(key)
    else:
        cache.set(key, definition, settings.TALLY_DEFINITION_CACHE_SECONDS)


def cached_definition(slug):
    """The SurveyDef the cache holds for `slug` now (None: none), without building it."""
    cached = cache.get(definition_cache_key(slug))
    return None if cached is None or cached == _MISSING else cached


def survey_definition_build(slug, *, using=None):
    """Build a SurveyDef from the database (4 queries), or None if there is no such survey."""
    survey = Survey.objects.using(using).filter(slug=slug).first()
    if survey is None:
        return None
    # The related reads name the database too: the router does not follow the parent's.
    choices = Prefetch("choices", queryset=Choice.objects.using(using))
    questions = Prefetch(
        "questions", queryset=Question.objects.using(using).prefetch_related(choices)
    )
    pages = (
        Page.objects.using(using)
        .filter(survey=survey)
        .prefetch_related(questions)
        .order_by("position")
    )
    return SurveyDef(
        id=survey.pk,
        slug=survey.slug,
        title=survey.title,
        intro=survey.intro,
        is_open=survey.is_open,
        pages=tuple(
            PageDef(
                position=ordinal,
                title=page.title,
                questions=tuple(
                    QuestionDef(
                        id=question.pk,
                        kind=question.kind,
                        text=question.text,
                        help_text=question.help_text,
                        required=question.required,
                        choices=tuple(ChoiceDef(c.pk, c.label) for c in question.choices.all()),
                        scale_low_label=question.scale_low_label,
                        scale_high_label=question.scale_high_label,
                    )
                    for question in page.questions.all()
                ),
            )
            for ordinal, page in enumerate(pages, 1)
        ),
    )


def open_surveys():
    """Return (slug, title) of the surveys open to new takers, cached briefly."""
    surveys = cache.get(_OPEN_SURVEYS_KEY)
    if surveys is None:
        surveys = list(Survey.objects.filter(is_open=True).values_list("slug", "title"))
        cache.set(_OPEN_SURVEYS_KEY, surveys, settings.TALLY_RESULTS_CACHE_SECONDS)
    return surveys


def response_by_token(token):
    """Return the Response for a resume token, or None.

    A miss on a replica is asked again on the primary: a replica may not have replayed a
    response started a moment ago (its resume link opened at once in another browser), and a
    404 would be wrong there, not merely stale. A miss on the primary is final.
    """
    alias = router.db_for_read(Response)
    found = Response.objects.using(alias).filter(token=token).first()
    if found is None and alias != PRIMARY:
        found = Response.objects.using(PRIMARY).filter(token=token).first()
    return found


# A saved answer as a page GET shows it: the columns of an Answer that initial_from_answers reads.
SavedAnswer = namedtuple("SavedAnswer", "question_id choice_ids scale_value text_value")
_ANSWERS_SQL = """
SELECT question_id, choice_ids, scale_value, text_value
  FROM surveys_answer
 WHERE response_id = %s AND question_id = ANY(%s)
"""


def response_answers(response_id, question_ids):
    """Return {question_id: SavedAnswer} for one taker's answers to the given questions.

    One fixed statement, on the database the router picks for reading an Answer: building it
    through the ORM (a queryset, its SQL, a model instance per row) cost more CPU than the
    query takes, on every page GET.
    """
    with connections[router.db_for_read(Answer)].cursor() as cursor:
        cursor.execute(_ANSWERS_SQL, [response_id, list(question_ids)])
        return {row[0]: SavedAnswer(*row) for row in cursor.fetchall()}


_CHOICE_COUNTS_SQL = """
SELECT a.question_id, c.choice_id, count(*)
  FROM surveys_answer AS a
 CROSS JOIN LATERAL unnest(a.choice_ids) AS c(choice_id)
 WHERE a.question_id = ANY(%s)
 GROUP BY a.question_id, c.choice_id
"""


class ResultsBusy(Exception):
    """The results are being computed by another request, and there is no older copy yet."""


# A cached copy of the results is fresh for TALLY_RESULTS_CACHE_SECONDS, and kept this many
# times as long, so that while one request rebuilds it the others serve the stale copy.
_RESULTS_KEPT_FACTOR = 10
# A copy stays fresh at least this many times as long as its rebuild took, so that however
# many answers a survey gathers, its rebuilds take at most 1/50 of the time of the replica
# serving them. Measured on the local fleet: 1.07 million answers (three surveys of about
# 360,000) took 1.3 to 1.8 s a rebuild under load, every 30 s per survey, about a fifth of a
# core for three surveys; with this, one rebuild of 1.8 s holds for 90 s.
_RESULTS_COST_FACTOR = 50
# The rebuild lock outlives a rebuild (it takes well under a second); a worker killed while
# holding it delays the next rebuild by this long at most.
_RESULTS_LOCK_SECONDS = 10
# How long a request with no copy at all waits for another's rebuild, and how often it looks.
_RESULTS_WAIT_SECONDS = 5
_RESULTS_POLL_SECONDS = 0.05


def survey_results(definition):
    """Return aggregate results for a survey, computed on a replica and cached briefly.

    One rebuild per survey at a time, however many workers miss at once: the request that
    takes the lock (an atomic add) rebuilds; the others serve the previous copy meanwhile, or,
    on a cold cache, wait for the new one and take the lock themselves if its holder went
    away. A cache that cannot be reached (django-redis ignores its errors, and its add then
    answers None rather than False) has no lock to share: each request computes. ResultsBusy
    when a rebuild outlasts the wait.
    """
    key = _RESULTS_KEY.format(survey_id=definition.id)
    entry = cache.get(key)
    if entry is not None and entry["fresh_until"] > time.time():
        return entry["results"]
    lock = f"{key}:rebuilding"
    deadline = time.monotonic() + _RESULTS_WAIT_SECONDS
    while True:
        taken = cache.add(lock, 1, _RESULTS_LOCK_SECONDS)
        if taken is None:
            return _survey_results_compute(definition)
        if taken:
            try:
                # The previous holder may have stored a fresh copy between this request's last
                # look and its add: check again, or that copy would be rebuilt at once.
                entry = cache.get(key)
                if entry is not None and entry["fresh_until"] > time.time():
                    return entry["results"]
                return _survey_results_store(key, definition)
            finally:
                cache.delete(lock)
        if entry is not None:
            return entry["results"]
        if time.monotonic() >= deadline:
            raise ResultsBusy(definition.slug)
        time.sleep(_RESULTS_POLL_SECONDS)
        entry = cache.get(key)
        if entry is not None:
            return entry["results"]


def _survey_results_store(key, definition):
    started = time.monotonic()
    results = _survey_results_compute(definition)
    took = time.monotonic() - started
    fresh = max(settings.TALLY_RESULTS_CACHE_SECONDS, _RESULTS_COST_FACTOR * took)
    entry = {"results": results, "fresh_until": time.time() + fresh}
    cache.set(key, entry, fresh * _RESULTS_KEPT_FACTOR)
    return results


def _survey_results_compute(definition):
    question_ids = [question.id for question in definition.questions()]
    totals = Response.objects.filter(survey_id=definition.id).aggregate(
        started=Count("id"), completed=Count("id", filter=Q(completed_at__isnull=False))
    )
    answered = (
        Answer.objects.filter(question_id__in=question_ids)
        .filter(Q(choice_ids__len__gt=0) | Q(scale_value__isnull=False) | ~Q(text_value=""))
        .values("question_id")
        .annotate(count=Count("id"), mean=Avg("scale_value"))
    )
    per_question = {row["question_id"]: row for row in answered}
    with connections[router.db_for_read(Answer)].cursor() as cursor:
        cursor.execute(_CHOICE_COUNTS_SQL, [question_ids])
        choice_counts = {(q, c): n for q, c, n in cursor.fetchall()}
    questions = []
    for question in definition.questions():
        row = per_question.get(question.id, {})
        questions.append(
            {
                "id": question.id,
                "text": question.text,
                "kind": question.kind,
                "answered": row.get("count", 0),
                "mean": row.get("mean"),
                "choices": [
                    {"label": choice.label, "count": choice_counts.get((question.id, choice.id), 0)}
                    for choice in question.choices
                ],
            }
        )
    started = totals["started"]
    return {
        "started": started,
        "completed": totals["completed"],
        "completion_rate": totals["completed"] / started if started else None,
        "questions": questions,
    }
