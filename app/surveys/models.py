"""Surveys (authored in the admin) and the responses that takers write page by page."""

import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.urls import reverse


class Survey(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    intro = models.TextField(blank=True)
    is_open = models.BooleanField(default=True, help_text="Whether new takers may start it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("surveys:start", args=[self.slug])


class Page(models.Model):
    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="pages")
    position = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200)

    class Meta:
        ordering = ["survey", "position"]
        constraints = [
            models.UniqueConstraint(fields=["survey", "position"], name="page_position_unique"),
            models.CheckConstraint(condition=Q(position__gte=1), name="page_position_from_1"),
        ]

    def __str__(self):
        return f"{self.survey} / {self.position}. {self.title}"


class Question(models.Model):
    class Kind(models.TextChoices):
        SINGLE = "single", "Single choice"
        MULTIPLE = "multiple", "Multiple choice"
        SCALE = "scale", "Scale 1-5"
        TEXT = "text", "Free text"

    page = models.ForeignKey(Page, on_delete=models.CASCADE, related_name="questions")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.CharField(max_length=500)
    help_text = models.CharField(max_length=300, blank=True)
    required = models.BooleanField(default=True)
    scale_low_label = models.CharField(max_length=60, blank=True)
    scale_high_label = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["page", "position"]
        constraints = [
            models.UniqueConstraint(fields=["page", "position"], name="question_position_unique"),
        ]

    def __str__(self):
        return self.text


class Choice(models.Model):
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="choices")
    position = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=200)

    class Meta:
        ordering = ["question", "position"]
        constraints = [
            models.UniqueConstraint(fields=["question", "position"], name="choice_position_unique"),
        ]

    def __str__(self):
        return self.label


def new_resume_token():
    return secrets.token_urlsafe(18)


class Response(models.Model):
    """One taker's pass through a survey; the resume token is the taker's only credential."""

    # Indexed by response_survey_done, whose first column is the survey.
    survey = models.ForeignKey(
        Survey, on_delete=models.PROTECT, related_name="responses", db_index=False
    )
    token = models.CharField(max_length=32, unique=True, default=new_resume_token, editable=False)
    # The id of the start form that created it, so a double-clicked start makes one response.
    start_key = models.UUIDField(null=True, blank=True, editable=False)
    # The furthest page the taker may open: one past the last page means every page is saved.
    reached_page = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["survey", "completed_at"], name="response_survey_done"),
            # The CSV export's keyset pages: a survey's responses by id (surveys/export.py).
            models.Index(fields=["survey", "id"], name="response_survey_id"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["survey", "start_key"], name="response_started_once")
        ]

    def __str__(self):
        return f"{self.survey} response {self.pk}"


class Answer(models.Model):
    """A taker's answer to one question; re-saving a page updates it in place."""

    # Indexed by the unique (response, question) constraint; a second index would only slow
    # down the hottest INSERT in the app.
    response = models.ForeignKey(
        Response, on_delete=models.CASCADE, related_name="answers", db_index=False
    )
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="answers")
    # Chosen Choice ids for single and multiple choice questions, validated against the
    # survey's definition; an array keeps a page save to one INSERT ... ON CONFLICT.
    choice_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    scale_value = models.PositiveSmallIntegerField(null=True, blank=True)
    text_value = models.TextField(blank=True)
    # The id the client sent with the page submission; load tests reconcile their ledger by it.
    submission_id = models.UUIDField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["response", "question"], name="answer_once_per_question"
            ),
            models.CheckConstraint(
                condition=Q(scale_value__isnull=True) | Q(scale_value__range=(1, 5)),
                name="answer_scale_1_to_5",
            ),
        ]

    def __str__(self):
        return f"answer {self.pk} to question {self.question_id}"
