"""The forms takers send: starting a survey, and one page built from its cached definition."""

import re

from django import forms
from django.core.exceptions import ValidationError
from django.http import Http404

from surveys import memo, rendering
from surveys.models import Question

TEXT_MAX_LENGTH = 2000
SCALE = [(value, str(value)) for value in range(1, 6)]
# A choice id as a form sends it: ASCII digits, few enough for int(). Not str.isdigit(), which
# also accepts "²" and "①" (int() refuses them), nor a bare int() (it refuses 5,000 digits).
_CHOICE_ID = re.compile(r"[0-9]{1,19}")


class AsciiUUIDField(forms.UUIDField):
    """A UUID written in ASCII: Python's uuid.UUID also reads other scripts' digits."""

    def to_python(self, value):
        if isinstance(value, str) and not value.isascii():
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


def _field(question):
    common = {
        "label": question.text,
        "help_text": question.help_text,
        "required": question.required,
    }
    choices = [(choice.id, choice.label) for choice in question.choices]
    if question.kind == Question.Kind.SINGLE:
        return forms.TypedChoiceField(
            choices=choices, coerce=int, empty_value=None, widget=forms.RadioSelect, **common
        )
    if question.kind == Question.Kind.MULTIPLE:
        return forms.TypedMultipleChoiceField(
            choices=choices, coerce=int, widget=forms.CheckboxSelectMultiple, **common
        )
    if question.kind == Question.Kind.SCALE:
        return forms.TypedChoiceField(
            choices=SCALE, coerce=int, empty_value=None, widget=forms.RadioSelect, **common
        )
    return forms.CharField(
        max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}), **common
    )


class StartForm(forms.Form):
    """Starting a survey; `start_key` makes a double-clicked or replayed start recognisable."""

    start_key = AsciiUUIDField(required=False, widget=forms.HiddenInput)


class PageForm(forms.Form):
    """One page's questions; `submission_id` makes a replayed POST recognisable."""

    submission_id = AsciiUUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, page, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.page = page
        for question in page.questions:
            self.fields[question.field_name] = _field(question)

    def clean(self):
        """Refuse what a browser never sends: two answers to one question, an option twice."""
        getlist = getattr(self.data, "getlist", None)
        for name, field in self.fields.items() if getlist else ():
            values = getlist(name)
            if isinstance(field, forms.MultipleChoiceField):
                if len(set(values)) < len(values):
                    self.add_error(name, "Choose each option at most once.")
            elif len(values) > 1:
                self.add_error(name, "Send one answer to this question.")
        return super().clean()

    def fields_html(self):
        """The page's inputs, for page.html: Django's widget markup, written without templates."""
        return rendering.page_fields_html(self)


# Each page's skeleton (rendering.PageSkeleton), made by the first GET of that page in this
# process: {id(page): (page, skeleton)}. Holding the page keeps its id from being reused while
# it is a key; the definition's memo in selectors.py hands every request the same PageDef
# objects until the survey changes, and then the new pages get skeletons of their own.
_SKELETONS = memo.Recent(1024)


def page_inputs_html(page, initial):
    """What PageForm(page, initial=initial).fields_html() gives, from the page's skeleton."""
    entry = _SKELETONS.get(id(page))
    if entry is None or entry[0] is not page:
        entry = (page, rendering.PageSkeleton(PageForm(page)))
        _SKELETONS.put(id(page), entry)
    return entry[1].fill(initial)


def initial_from_answers(page, answers):
    """Return form initial data from a taker's saved answers {question_id: Answer}."""
    initial = {}
    for question in page.questions:
        answer = answers.get(question.id)
        if answer is None:
            continue
        if question.kind == Question.Kind.SINGLE:
            initial[question.field_name] = answer.choice_ids[0] if answer.choice_ids else None
        elif question.kind == Question.Kind.MULTIPLE:
            initial[question.field_name] = answer.choice_ids
        elif question.kind == Question.Kind.SCALE:
            initial[question.field_name] = answer.scale_value
        else:
            initial[question.field_name] = answer.text_value
    return initial


def reject_unknown_ids(page, data):
    """Raise Http404 if the POST names a question not on this page or a choice it does not have.

    Values that are not ids at all are left for the form, which reports them as errors (400).
    """
    questions = {question.field_name: question for question in page.questions}
    for name in data:
        if name in ("csrfmiddlewaretoken", "submission_id"):
            continue
        question = questions.get(name)
        if question is None:
            raise Http404(f"No question {name!r} on this page.")
        if question.kind not in (Question.Kind.SINGLE, Question.Kind.MULTIPLE):
            continue
        for value in data.getlist(name):
            if _CHOICE_ID.fullmatch(value) and int(value) not in question.choice_ids:
                raise Http404(f"No choice {value} for question {question.id}.")
