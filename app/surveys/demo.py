"""Demo content: school-climate surveys shaped like the ones in the case study, and responses."""

import random
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from routing import PRIMARY
from surveys.models import Answer, Choice, Page, Question, Response, Survey

# Five pages of ten questions, one page per "essential" of a school-climate survey.
ESSENTIALS = [
    ("Effective leaders", "The principal"),
    ("Collaborative teachers", "Teachers at this school"),
    ("Involved families", "Families of students"),
    ("Supportive environment", "Students at this school"),
    ("Ambitious instruction", "In my classes"),
]
STATEMENTS = [
    "{who} communicate a clear vision for the school.",
    "{who} are committed to improving the school.",
    "{who} feel responsible for helping each other do their best.",
    "{who} are treated with respect.",
    "{who} set high expectations for learning.",
    "{who} are encouraged to try new ideas.",
]
FREQUENCY = ["Never", "Once or twice", "Monthly", "Weekly", "Almost daily"]
TOPICS = ["Reading", "Mathematics", "Science", "Arts", "Sports", "Languages"]


def create_survey(*, slug, title, pages=5, questions_per_page=10):
    """Create a survey with every question kind on every page; returns the Survey."""
    with transaction.atomic(using=PRIMARY):
        survey = Survey.objects.create(
            slug=slug,
            title=title,
            intro="This survey asks how your school works. Answers are anonymous.",
        )
        for position in range(1, pages + 1):
            essential, who = ESSENTIALS[(position - 1) % len(ESSENTIALS)]
            page = Page.objects.create(survey=survey, position=position, title=essential)
            for number in range(1, questions_per_page + 1):
                _create_question(page, number, who)
    return survey


def _create_question(page, number, who):
    kind = _kind_for(number)
    question = Question.objects.create(
        page=page,
        position=number,
        kind=kind,
        text=_text_for(kind, number, who),
        required=number % 5 != 0,
        scale_low_label="Strongly disagree" if kind == Question.Kind.SCALE else "",
        scale_high_label="Strongly agree" if kind == Question.Kind.SCALE else "",
    )
    labels = {Question.Kind.SINGLE: FREQUENCY, Question.Kind.MULTIPLE: TOPICS}.get(kind, [])
    Choice.objects.bulk_create(
        Choice(question=question, position=i, label=label) for i, label in enumerate(labels, 1)
    )


def _kind_for(number):
    if number == 10:
        return Question.Kind.TEXT
    if number % 4 == 0:
        return Question.Kind.MULTIPLE
    if number % 3 == 0:
        return Question.Kind.SINGLE
    return Question.Kind.SCALE


def _text_for(kind, number, who):
    if kind == Question.Kind.TEXT:
        return "Anything else you would like to tell us about this?"
    if kind == Question.Kind.MULTIPLE:
        return "Which of these subjects does this apply to?"
    if kind == Question.Kind.SINGLE:
        return f"How often does this happen: {who.lower()} ask for your opinion?"
    return STATEMENTS[number % len(STATEMENTS)].format(who=who)


def create_responses(survey, count, *, rng=None, completed_share=0.8, batch_size=2000):
    """Bulk-create `count` responses with answers; a share of them complete. Returns the count."""
    rng = rng or random.Random(0)
    questions = list(
        Question.objects.using(PRIMARY)
        .filter(page__survey=survey)
        .select_related("page")
        .prefetch_related("choices")
        .order_by("page__position", "position")
    )
    page_count = Page.objects.using(PRIMARY).filter(survey=survey).count()
    now = timezone.now()
    created = 0
    while created < count:
        size = min(batch_size, count - created)
        with transaction.atomic(using=PRIMARY):
            responses = Response.objects.bulk_create(
                _response(survey, page_count, now, rng, completed_share) for _ in range(size)
            )
            Answer.objects.bulk_create(
                (
                    Answer(response=response, question=question, **_answer(question, rng))
                    for response in responses
                    for question in questions
                    if question.page.position < response.reached_page
                ),
                batch_size=batch_size,
            )
        created += size
    return created


def _response(survey, page_count, now, rng, completed_share):
    done = rng.random() < completed_share
    return Response(
        survey=survey,
        reached_page=page_count + 1 if done else rng.randint(1, page_count),
        completed_at=now - timedelta(minutes=rng.randint(1, 60 * 24 * 14)) if done else None,
    )


def _answer(question, rng):
    if question.kind == Question.Kind.SCALE:
        return {"scale_value": rng.choices(range(1, 6), weights=[1, 2, 3, 4, 3])[0]}
    choice_ids = [choice.pk for choice in question.choices.all()]
    if question.kind == Question.Kind.SINGLE:
        return {"choice_ids": [rng.choice(choice_ids)]}
    if question.kind == Question.Kind.MULTIPLE:
        return {"choice_ids": sorted(rng.sample(choice_ids, rng.randint(1, 3)))}
    return {"text_value": rng.choice(["", "", "More time to plan together would help."])}
